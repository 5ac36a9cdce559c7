//! A per-layer profile of the CPU kernels (`gpu-server bench --profile`): while on, every call
//! of [`super::conv2d`], [`super::max_pool2x`] and [`super::upsample_bilinear`] is timed and
//! added up by its operation and shape, so layers of one shape (the same convolution repeated)
//! share a line. Off, a call costs one relaxed atomic load.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

static ON: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<Option<HashMap<String, Line>>> = Mutex::new(None);

/// One operation and shape: how often it ran and how long it took in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Line {
    pub calls: usize,
    pub seconds: f64,
}

/// Start counting (from an empty table).
pub fn start() {
    *TABLE.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
    ON.store(true, Ordering::Relaxed);
}

/// Stop counting; the lines, slowest first.
pub fn stop() -> Vec<(String, Line)> {
    ON.store(false, Ordering::Relaxed);
    let table = TABLE.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mut lines: Vec<(String, Line)> = table.unwrap_or_default().into_iter().collect();
    lines.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds).then(a.0.cmp(&b.0)));
    lines
}

/// Run `f`, adding its time to the line `name()` names when counting.
pub fn timed<T>(name: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let out = f();
    let seconds = t.elapsed().as_secs_f64();
    if let Some(table) = TABLE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let line = table.entry(name()).or_default();
        line.calls += 1;
        line.seconds += seconds;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_while_on_and_groups_by_name() {
        // Tests in this binary may run the kernels concurrently: only these names are checked.
        timed(|| "profile-test before".into(), || ());
        start();
        for _ in 0..3 {
            timed(
                || "profile-test a".into(),
                || std::thread::sleep(std::time::Duration::from_millis(2)),
            );
        }
        timed(|| "profile-test b".into(), || ());
        let lines = stop();
        timed(|| "profile-test after".into(), || ());
        let find = |n: &str| {
            lines
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, l)| l.clone())
        };
        let a = find("profile-test a").expect("counted");
        assert_eq!(a.calls, 3);
        assert!(a.seconds >= 0.006, "{a:?}");
        assert_eq!(find("profile-test b").map(|l| l.calls), Some(1));
        assert!(find("profile-test before").is_none() && find("profile-test after").is_none());
        let pos = |n: &str| lines.iter().position(|(name, _)| name == n).unwrap();
        assert!(
            pos("profile-test a") < pos("profile-test b"),
            "slowest first"
        );
    }
}
