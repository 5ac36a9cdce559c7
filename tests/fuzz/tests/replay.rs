//! Every committed input of every fuzz target, and the generated seeds, through the target's
//! function: the corpus (`tests/fuzz/corpus/<target>/`) and the inputs that once crashed
//! (`tests/fuzz/regressions/<target>/`, each a regression test of the bug it found).

use std::path::Path;

fn inputs(folder: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(folder)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.map(|e| e.expect("an entry").path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).expect("readable"),
            )
        })
        .collect()
}

#[test]
fn every_target_has_seeds_and_a_corpus() {
    let seeds = fuzz::seeds();
    for t in fuzz::TARGETS {
        assert!(
            seeds.iter().any(|s| s.0 == t.name),
            "{} has no seeds",
            t.name
        );
        assert!(
            !inputs("corpus", t.name).is_empty(),
            "{} has no committed corpus",
            t.name
        );
    }
    for (target, _, _) in &seeds {
        fuzz::target(target);
    }
}

#[test]
fn seeds_pass() {
    for (target, name, bytes) in fuzz::seeds() {
        eprintln!("{target}/{name}");
        fuzz::target(target).run(&bytes);
    }
}

/// Every input under `folder/<target>/` through its target.
fn replay(folder: &str) {
    for t in fuzz::TARGETS {
        for (name, bytes) in inputs(folder, t.name) {
            eprintln!("{name}");
            t.run(&bytes);
        }
    }
}

#[test]
fn the_committed_corpus_passes() {
    replay("corpus");
}

#[test]
fn every_crash_found_stays_fixed() {
    replay("regressions");
}
