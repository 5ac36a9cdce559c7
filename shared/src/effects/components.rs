//! Connected parts of a subject: specks too small to be the pet, and holes a die-cut line must
//! not follow.

/// A horizontal run of pixels of a set: row `y`, columns `x0..x1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub y: u32,
    pub x0: u32,
    pub x1: u32,
}

/// The connected parts of a set, as runs (a set's runs are a few per row, so this is a scan
/// of the pixels and a union-find over far fewer runs: a BFS over a 12 MP mask's pixels took
/// 10× longer).
pub struct Parts {
    pub runs: Vec<Run>,
    /// Each run's part, numbered from 0.
    pub part: Vec<u32>,
    /// Each part's area in pixels.
    pub area: Vec<u64>,
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let p = parent[i as usize];
        parent[i as usize] = parent[p as usize];
        i = p;
    }
    i
}

/// The parts of the set of pixels whose value `on` accepts, over `width`×`height` pixels of
/// `stride` bytes each in `plane` (the value is each pixel's first byte: slice the plane at
/// the channel wanted); 8-connected with `diagonal`, else 4-connected.
pub fn parts(
    width: usize,
    height: usize,
    diagonal: bool,
    plane: &[u8],
    stride: usize,
    on: impl Fn(u8) -> bool,
) -> Parts {
    assert!(
        width * height == 0 || plane.len() > (width * height - 1) * stride,
        "plane size"
    );
    let mut runs: Vec<Run> = Vec::new();
    let mut parent: Vec<u32> = Vec::new();
    let mut prev = 0..0; // the runs of the row above
    let reach = u32::from(diagonal);
    for y in 0..height {
        let row = &plane[y * width * stride..];
        let at = |x: usize| on(row[x * stride]);
        let start = runs.len();
        let mut x = 0;
        while x < width {
            if !at(x) {
                x += 1;
                continue;
            }
            let x0 = x;
            while x < width && at(x) {
                x += 1;
            }
            runs.push(Run {
                y: y as u32,
                x0: x0 as u32,
                x1: x as u32,
            });
            parent.push((runs.len() - 1) as u32);
        }
        // Join each new run with the runs above it that touch it.
        let mut a = prev.start;
        for b in start..runs.len() {
            let (b0, b1) = (runs[b].x0, runs[b].x1);
            while a < prev.end && runs[a].x1 + reach <= b0 {
                a += 1;
            }
            let mut j = a;
            while j < prev.end && runs[j].x0 < b1 + reach {
                let (ra, rb) = (find(&mut parent, j as u32), find(&mut parent, b as u32));
                if ra != rb {
                    parent[ra.max(rb) as usize] = ra.min(rb);
                }
                j += 1;
            }
        }
        prev = start..runs.len();
    }
    let mut number = vec![u32::MAX; runs.len()];
    let mut part = Vec::with_capacity(runs.len());
    let mut area: Vec<u64> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let root = find(&mut parent, i as u32) as usize;
        if number[root] == u32::MAX {
            number[root] = area.len() as u32;
            area.push(0);
        }
        let p = number[root];
        area[p as usize] += u64::from(run.x1 - run.x0);
        part.push(p);
    }
    Parts { runs, part, area }
}

impl Parts {
    /// Which parts are at least `fraction` of the largest one's area.
    pub fn large(&self, fraction: f64) -> Vec<bool> {
        let largest = self.area.iter().copied().max().unwrap_or(0);
        self.area
            .iter()
            .map(|&a| a as f64 >= largest as f64 * fraction)
            .collect()
    }

    /// The runs of the parts `keep` says.
    pub fn runs_of<'a>(&'a self, keep: &'a [bool]) -> impl Iterator<Item = Run> + 'a {
        self.runs
            .iter()
            .zip(&self.part)
            .filter(|(_, p)| keep[**p as usize])
            .map(|(r, _)| *r)
    }
}

/// The pixels of the 8-connected parts of `set` whose area is at least `fraction` of the
/// largest part's (all of `set` when it has one part).
/// (Used by the tests: the product works on runs of parts and bounded distances.)
#[cfg(test)]
pub fn keep_large(set: &[bool], width: usize, height: usize, fraction: f64) -> Vec<bool> {
    assert_eq!(set.len(), width * height, "set size");
    let bytes: Vec<u8> = set.iter().map(|&b| u8::from(b)).collect();
    let p = parts(width, height, true, &bytes, 1, |v| v != 0);
    let keep = p.large(fraction);
    let mut out = vec![false; set.len()];
    for r in p.runs_of(&keep) {
        let row = r.y as usize * width;
        out[row + r.x0 as usize..row + r.x1 as usize].fill(true);
    }
    out
}

/// The runs of the 4-connected parts of the pixels of `plane` (one byte each) that `open`
/// accepts and that do not touch the image's border: the holes of the rest.
pub fn enclosed(width: usize, height: usize, plane: &[u8], open: impl Fn(u8) -> bool) -> Vec<Run> {
    let p = parts(width, height, false, plane, 1, open);
    let mut touches = vec![false; p.area.len()];
    for (r, &part) in p.runs.iter().zip(&p.part) {
        if r.y == 0 || r.y as usize == height - 1 || r.x0 == 0 || r.x1 as usize == width {
            touches[part as usize] = true;
        }
    }
    p.runs
        .iter()
        .zip(&p.part)
        .filter(|(_, part)| !touches[**part as usize])
        .map(|(r, _)| *r)
        .collect()
}

/// Fill the holes of `set`: every pixel outside it that cannot reach the image's border
/// through 4-connected pixels outside it joins it, so its outer contour is the only one.
/// (Used by the tests: the product works on runs of parts and bounded distances.)
#[cfg(test)]
pub fn fill_holes(set: &mut [bool], width: usize, height: usize) {
    assert_eq!(set.len(), width * height, "set size");
    let bytes: Vec<u8> = set.iter().map(|&b| u8::from(b)).collect();
    for r in enclosed(width, height, &bytes, |v| v == 0) {
        let row = r.y as usize * width;
        set[row + r.x0 as usize..row + r.x1 as usize].fill(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let w = rows[0].len();
        let set = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b == b'#'))
            .collect();
        (set, w, rows.len())
    }

    #[test]
    fn drops_specks_keeps_diagonal_neighbours() {
        let (set, w, h) = grid(&["####......", "####....#.", "####.....#", "####......"]);
        let kept = keep_large(&set, w, h, 0.2);
        let (want, _, _) = grid(&["####......", "####......", "####......", "####......"]);
        assert_eq!(kept, want, "the 2-pixel diagonal speck is 1/8 of the body");
        assert_eq!(keep_large(&set, w, h, 0.1), set, "at 10% it stays");
        assert!(keep_large(&[false; 6], 3, 2, 0.5).iter().all(|&k| !k));
    }

    /// Parts counted by a flood fill, pixel by pixel.
    fn naive_count(set: &[bool], w: usize, h: usize, diagonal: bool) -> (usize, Vec<u64>) {
        let mut seen = vec![false; set.len()];
        let mut areas = Vec::new();
        for s in 0..set.len() {
            if !set[s] || seen[s] {
                continue;
            }
            seen[s] = true;
            let (mut stack, mut area) = (vec![s], 0u64);
            while let Some(i) = stack.pop() {
                area += 1;
                let (x, y) = ((i % w) as isize, (i / w) as isize);
                for (dx, dy) in [
                    (-1, 0),
                    (1, 0),
                    (0, -1),
                    (0, 1),
                    (-1, -1),
                    (1, -1),
                    (-1, 1),
                    (1, 1),
                ]
                .into_iter()
                .take(if diagonal { 8 } else { 4 })
                {
                    let (nx, ny) = (x + dx, y + dy);
                    if (0..w as isize).contains(&nx) && (0..h as isize).contains(&ny) {
                        let j = ny as usize * w + nx as usize;
                        if set[j] && !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            areas.push(area);
        }
        areas.sort_unstable();
        (areas.len(), areas)
    }

    #[test]
    fn parts_equal_a_flood_fill() {
        let mut seed = 11u32;
        for (w, h, density) in [(37, 29, 45), (64, 3, 55), (5, 40, 60), (50, 50, 30)] {
            let set: Vec<bool> = (0..w * h)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) % 100 < density
                })
                .collect();
            for diagonal in [true, false] {
                let bytes: Vec<u8> = set.iter().map(|&b| u8::from(b)).collect();
                let p = parts(w, h, diagonal, &bytes, 1, |v| v != 0);
                let mut areas = p.area.clone();
                areas.sort_unstable();
                assert_eq!((p.area.len(), areas), naive_count(&set, w, h, diagonal));
            }
        }
    }

    #[test]
    fn fills_enclosed_holes_only() {
        let (mut set, w, h) = grid(&[
            ".......", //
            ".#####.", //
            ".#..#..", //
            ".#####.", //
            ".......",
        ]);
        fill_holes(&mut set, w, h);
        let (want, _, _) = grid(&[
            ".......", //
            ".#####.", //
            ".####..", //
            ".#####.", //
            ".......",
        ]);
        assert_eq!(
            set, want,
            "the hole closes, the notch open to the outside stays"
        );
    }
}
