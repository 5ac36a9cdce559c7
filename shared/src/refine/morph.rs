//! Binary morphology with a square structuring element, in O(pixels) whatever the radius: two
//! scans per axis of "distance to the nearest set pixel", capped at the radius.

/// `out[p]` is true where a set pixel of `set` lies within Chebyshev distance `r` of `p`
/// (a dilation by the (2r+1)² square). Outside the image counts as unset.
pub fn dilate(set: &[bool], width: usize, height: usize, r: usize) -> Vec<bool> {
    assert_eq!(set.len(), width * height, "mask size");
    if r == 0 {
        return set.to_vec();
    }
    let cap = r.min(u16::MAX as usize - 1) as u16 + 1;
    // Horizontal: distance to the nearest set pixel in the row, capped.
    let mut near = vec![cap; set.len()];
    for (row_set, row) in set.chunks_exact(width).zip(near.chunks_exact_mut(width)) {
        let mut d = cap;
        for (s, n) in row_set.iter().zip(row.iter_mut()) {
            d = if *s { 0 } else { d.saturating_add(1).min(cap) };
            *n = d;
        }
        let mut d = cap;
        for (s, n) in row_set.iter().zip(row.iter_mut()).rev() {
            d = if *s { 0 } else { d.saturating_add(1).min(cap) };
            *n = (*n).min(d);
        }
    }
    // Vertical: rows whose horizontal distance is within r, looked for up and down.
    let mut out = vec![false; set.len()];
    let mut run = vec![cap; width];
    for y in 0..height {
        let row = &near[y * width..(y + 1) * width];
        for (d, &n) in run.iter_mut().zip(row) {
            *d = if n <= r as u16 {
                0
            } else {
                d.saturating_add(1).min(cap)
            };
        }
        for (o, &d) in out[y * width..(y + 1) * width].iter_mut().zip(&run) {
            *o = d <= r as u16;
        }
    }
    run.fill(cap);
    for y in (0..height).rev() {
        let row = &near[y * width..(y + 1) * width];
        for (d, &n) in run.iter_mut().zip(row) {
            *d = if n <= r as u16 {
                0
            } else {
                d.saturating_add(1).min(cap)
            };
        }
        for (o, &d) in out[y * width..(y + 1) * width].iter_mut().zip(&run) {
            *o |= d <= r as u16;
        }
    }
    out
}

/// `out[p]` is true where every pixel within Chebyshev distance `r` of `p` is set; pixels
/// outside the image count as set, so the border does not erode.
pub fn erode(set: &[bool], width: usize, height: usize, r: usize) -> Vec<bool> {
    let unset: Vec<bool> = set.iter().map(|s| !s).collect();
    dilate(&unset, width, height, r)
        .into_iter()
        .map(|d| !d)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dilate(set: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
        let mut out = vec![false; set.len()];
        for y in 0..h {
            for x in 0..w {
                let (y0, y1) = (y.saturating_sub(r), (y + r).min(h - 1));
                let (x0, x1) = (x.saturating_sub(r), (x + r).min(w - 1));
                out[y * w + x] = (y0..=y1).any(|yy| (x0..=x1).any(|xx| set[yy * w + xx]));
            }
        }
        out
    }

    #[test]
    fn matches_the_definition() {
        let (w, h) = (37, 23);
        // A deterministic scatter of set pixels.
        let set: Vec<bool> = (0..w * h).map(|i| (i * 7919 + 13) % 97 < 3).collect();
        for r in [0, 1, 2, 5, 40] {
            assert_eq!(
                dilate(&set, w, h, r),
                naive_dilate(&set, w, h, r),
                "r = {r}"
            );
            let unset: Vec<bool> = set.iter().map(|s| !s).collect();
            let eroded = erode(&unset, w, h, r);
            let expect: Vec<bool> = naive_dilate(&set, w, h, r).iter().map(|d| !d).collect();
            assert_eq!(eroded, expect, "erode r = {r}");
        }
    }
}
