//! Large buffers (of `f32` or `u16`) for the foreground estimation whose pages are touched only
//! where they are used.
//!
//! Why not `vec![0.0; n]`: at 12 MP the estimation's full-size F and B were 144 MB each, and the
//! allocator zeroes reused memory, so every page of both was written on every photo although
//! only the region near the edge is read (with the matting's soft α on three noisy 12 MP photos,
//! a quarter of the pixels and 43% of the pages); on a virtual machine each first touch of a
//! page is a fault the host serves too (`perf record -e page-faults` on the CLI over those
//! photos: 29% of all faults in that zeroing; 191,000 faults before, 173,000 after). A
//! [`Plane`] takes fresh memory from the system allocator, which the kernel zeroes lazily page
//! by page, and goes back to a small pool of its thread when dropped, so the thread's next photo
//! reuses the pages already backed (the CLI estimates on one thread; the server estimates on
//! tokio's blocking threads, which end, pools and all, after 10 s without work). Since then F and
//! B are 16-bit (72 MB each at 12 MP; `foreground.rs`): on those three photos 178,000–179,000
//! faults became 151,000 (AMD EPYC Zen 4, three alternating runs each).
//!
//! The contents of a plane taken from the pool are those its last user left (valid values,
//! zeros where never written): callers write every element they read.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::RefCell,
    marker::PhantomData,
    ops::{Deref, DerefMut},
    ptr::NonNull,
};

/// Planes a thread keeps for reuse: F and B of an estimation's four largest levels, so that
/// photos of one size find each level's planes again.
const POOL: usize = 8;
/// Planes smaller than this (in bytes) are ordinary vectors' business: not pooled.
const POOLED_FROM: usize = 1 << 20;
/// The alignment of every plane, whatever its element.
const ALIGN: usize = 16;

/// Element types for which all-zero bytes are a value (what fresh system memory holds).
///
/// # Safety
/// All-zero bytes must be a valid value of the type, and any bytes a value of the type left
/// must be one too (no padding, no invalid bit patterns).
pub unsafe trait Element: Copy + Send + Sync + 'static {}
// SAFETY: plain numbers: every bit pattern is a value.
unsafe impl Element for f32 {}
// SAFETY: as above.
unsafe impl Element for u16 {}

/// A thread's spare planes as (pointer, capacity in bytes), freed when the thread ends.
struct Spare(Vec<(NonNull<u8>, usize)>);

impl Drop for Spare {
    fn drop(&mut self) {
        for &(ptr, bytes) in &self.0 {
            // SAFETY: allocated by `System` with this layout in `Plane::scratch`.
            unsafe { System.dealloc(ptr.as_ptr(), layout(bytes)) };
        }
    }
}

thread_local! {
    static SPARE: RefCell<Spare> = const { RefCell::new(Spare(Vec::new())) };
}

/// `len` values of `T` in memory owned by the system allocator (see the module's docs).
pub struct Plane<T: Element = f32> {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes allocated.
    bytes: usize,
    element: PhantomData<T>,
}

// SAFETY: a `Plane` owns its memory as a `Vec` does, and `T` is `Send + Sync`.
unsafe impl<T: Element> Send for Plane<T> {}
unsafe impl<T: Element> Sync for Plane<T> {}

fn layout(bytes: usize) -> Layout {
    Layout::from_size_align(bytes, ALIGN).expect("a plane fits the address space")
}

impl<T: Element> Plane<T> {
    /// A plane of `len` values, each 0 or a value an earlier plane held.
    pub fn scratch(len: usize) -> Plane<T> {
        const { assert!(std::mem::align_of::<T>() <= ALIGN) };
        let need = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("a plane fits the address space");
        if need >= POOLED_FROM {
            let reused = SPARE.try_with(|spare| {
                let spare = &mut spare.borrow_mut().0;
                // The smallest spare that is large enough.
                let best = spare
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, bytes))| *bytes >= need)
                    .min_by_key(|(_, (_, bytes))| *bytes)
                    .map(|(i, _)| i)?;
                let (ptr, bytes) = spare.swap_remove(best);
                Some(Plane {
                    ptr,
                    len,
                    bytes,
                    element: PhantomData,
                })
            });
            if let Ok(Some(plane)) = reused {
                return plane;
            }
        }
        let bytes = need.max(ALIGN);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { System.alloc_zeroed(layout(bytes)) };
        let ptr =
            NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout(bytes)));
        Plane {
            ptr,
            len,
            bytes,
            element: PhantomData,
        }
    }
}

impl<T: Element> From<&[T]> for Plane<T> {
    fn from(values: &[T]) -> Plane<T> {
        let mut plane = Plane::scratch(values.len());
        plane.copy_from_slice(values);
        plane
    }
}

impl<T: Element> Clone for Plane<T> {
    fn clone(&self) -> Plane<T> {
        Plane::from(&**self)
    }
}

impl<T: Element> std::fmt::Debug for Plane<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plane({} × {})", self.len, std::any::type_name::<T>())
    }
}

impl<T: Element> Deref for Plane<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `bytes` ≥ `len` values, aligned (`ALIGN`), each zeroed at allocation or
        // written since, and valid either way (`Element`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Element> DerefMut for Plane<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Element> Drop for Plane<T> {
    fn drop(&mut self) {
        if self.bytes >= POOLED_FROM {
            let (ptr, bytes) = (self.ptr, self.bytes);
            let kept = SPARE.try_with(|spare| {
                let spare = &mut spare.borrow_mut().0;
                (spare.len() < POOL)
                    .then(|| spare.push((ptr, bytes)))
                    .is_some()
            });
            if kept == Ok(true) {
                return;
            }
        }
        // SAFETY: allocated by `System` with this layout in `scratch`.
        unsafe { System.dealloc(self.ptr.as_ptr(), layout(self.bytes)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_are_reused_and_hold_what_was_written() {
        let n = POOLED_FROM / 4 + 10;
        let mut a = Plane::<f32>::scratch(n);
        assert!(a.iter().all(|&v| v == 0.0), "fresh memory is zero");
        a[n - 1] = 7.0;
        let at = a.ptr;
        drop(a);
        // The pool is this thread's: the next plane that fits is the same memory, as left.
        let b = Plane::<f32>::scratch(n - 5);
        assert_eq!((b.ptr, b.len(), b.bytes), (at, n - 5, 4 * n));
        let c = Plane::<f32>::scratch(n - 5);
        assert_ne!(c.ptr, at, "a plane in use is not handed out twice");
        drop(b);
        let b = Plane::<f32>::scratch(n);
        assert_eq!(b.ptr, at);
        assert_eq!(b[n - 1], 7.0);
        // Too large for any spare: fresh memory.
        drop(c);
        let d = Plane::<f32>::scratch(2 * n);
        assert!(d.ptr != at && d.iter().all(|&v| v == 0.0));
        // Planes of another element share the pool by bytes: twice as many u16 as f32.
        drop(b);
        let e = Plane::<u16>::scratch(2 * n);
        assert_eq!((e.ptr, e.len()), (at, 2 * n));
        let small = Plane::from(&[1.0, 2.0][..]);
        assert_eq!(&*small, &[1.0, 2.0]);
        assert_eq!(&*small.clone(), &[1.0, 2.0]);
    }
}
