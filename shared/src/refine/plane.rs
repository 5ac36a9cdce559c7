//! Large `f32` buffers for the foreground estimation whose pages are touched only where they
//! are used.
//!
//! Why not `vec![0.0; n]`: at 12 MP the estimation's full-size F and B are 144 MB each, and the
//! allocator zeroes reused memory, so every page of both was written on every photo although
//! only the region near the edge is read (with the matting's soft α on three noisy 12 MP photos,
//! a quarter of the pixels and 43% of the pages); on a virtual machine each first touch of a
//! page is a fault the host serves too (`perf record -e page-faults` on the CLI over those
//! photos: 29% of all faults in that zeroing; 191,000 faults before, 173,000 after). A
//! [`Plane`] takes fresh memory from the system allocator, which the kernel zeroes lazily page
//! by page, and goes back to a small pool of its thread when dropped, so the thread's next photo
//! reuses the pages already backed (the CLI estimates on one thread; the server estimates on
//! tokio's blocking threads, which end, pools and all, after 10 s without work).
//!
//! The contents of a plane taken from the pool are those its last user left (valid floats, zeros
//! where never written): callers write every element they read.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::RefCell,
    ops::{Deref, DerefMut},
    ptr::NonNull,
};

/// Planes a thread keeps for reuse: F and B of an estimation's four largest levels, so that
/// photos of one size find each level's planes again.
const POOL: usize = 8;
/// Planes smaller than this (in floats) are ordinary vectors' business: not pooled.
const POOLED_FROM: usize = 1 << 18;

/// A thread's spare planes as (pointer, capacity in floats), freed when the thread ends.
struct Spare(Vec<(NonNull<f32>, usize)>);

impl Drop for Spare {
    fn drop(&mut self) {
        for &(ptr, cap) in &self.0 {
            // SAFETY: allocated by `System` with this layout in `Plane::scratch`.
            unsafe { System.dealloc(ptr.as_ptr().cast(), layout(cap)) };
        }
    }
}

thread_local! {
    static SPARE: RefCell<Spare> = const { RefCell::new(Spare(Vec::new())) };
}

/// `len` floats of memory owned by the system allocator (see the module's docs).
pub struct Plane {
    ptr: NonNull<f32>,
    len: usize,
    cap: usize,
}

// SAFETY: a `Plane` owns its memory as a `Vec` does.
unsafe impl Send for Plane {}
unsafe impl Sync for Plane {}

fn layout(cap: usize) -> Layout {
    Layout::array::<f32>(cap).expect("a plane fits the address space")
}

impl Plane {
    /// A plane of `len` floats, each 0 or a value an earlier plane held.
    pub fn scratch(len: usize) -> Plane {
        if len >= POOLED_FROM {
            let reused = SPARE.try_with(|spare| {
                let spare = &mut spare.borrow_mut().0;
                // The smallest spare that is large enough.
                let best = spare
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, cap))| *cap >= len)
                    .min_by_key(|(_, (_, cap))| *cap)
                    .map(|(i, _)| i)?;
                let (ptr, cap) = spare.swap_remove(best);
                Some(Plane { ptr, len, cap })
            });
            if let Ok(Some(plane)) = reused {
                return plane;
            }
        }
        let cap = len.max(1);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { System.alloc_zeroed(layout(cap)) };
        let ptr = NonNull::new(raw.cast::<f32>())
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout(cap)));
        Plane { ptr, len, cap }
    }
}

impl From<&[f32]> for Plane {
    fn from(values: &[f32]) -> Plane {
        let mut plane = Plane::scratch(values.len());
        plane.copy_from_slice(values);
        plane
    }
}

impl Clone for Plane {
    fn clone(&self) -> Plane {
        Plane::from(&**self)
    }
}

impl std::fmt::Debug for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plane({} floats)", self.len)
    }
}

impl Deref for Plane {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `cap >= len` initialised floats (zeroed at allocation, written since).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Plane {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        if self.cap >= POOLED_FROM {
            let (ptr, cap) = (self.ptr, self.cap);
            let kept = SPARE.try_with(|spare| {
                let spare = &mut spare.borrow_mut().0;
                (spare.len() < POOL)
                    .then(|| spare.push((ptr, cap)))
                    .is_some()
            });
            if kept == Ok(true) {
                return;
            }
        }
        // SAFETY: allocated by `System` with this layout in `scratch`.
        unsafe { System.dealloc(self.ptr.as_ptr().cast(), layout(self.cap)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_are_reused_and_hold_what_was_written() {
        let n = POOLED_FROM + 10;
        let mut a = Plane::scratch(n);
        assert!(a.iter().all(|&v| v == 0.0), "fresh memory is zero");
        a[n - 1] = 7.0;
        let at = a.ptr;
        drop(a);
        // The pool is this thread's: the next plane that fits is the same memory, as left.
        let b = Plane::scratch(n - 5);
        assert_eq!((b.ptr, b.len(), b.cap), (at, n - 5, n));
        let c = Plane::scratch(n - 5);
        assert_ne!(c.ptr, at, "a plane in use is not handed out twice");
        drop(b);
        let b = Plane::scratch(n);
        assert_eq!(b.ptr, at);
        assert_eq!(b[n - 1], 7.0);
        // Too large for any spare: fresh memory.
        drop(c);
        let d = Plane::scratch(2 * n);
        assert!(d.ptr != at && d.iter().all(|&v| v == 0.0));
        let small = Plane::from(&[1.0, 2.0][..]);
        assert_eq!(&*small, &[1.0, 2.0]);
        assert_eq!(&*small.clone(), &[1.0, 2.0]);
    }
}
