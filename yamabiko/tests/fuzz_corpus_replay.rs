//! Replays the fuzz corpora under `cargo test`: every file of `fuzz/corpus/<target>/`,
//! `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` goes through the same
//! checking function as the libFuzzer target of that name (`tests/fuzz_checks/mod.rs`),
//! so the inputs the fuzzers found interesting, the hand-made seeds, and every input
//! that once broke an invariant are checked on every test run without nightly Rust or
//! libFuzzer.

mod fuzz_checks;

use std::path::{Path, PathBuf};

/// `fuzz/` at the workspace root.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs `check` on every file of the target's corpus, seed and regression directories;
/// returns how many inputs ran. A failing input is named in the panic message.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut count = 0;
    for dir in ["corpus", "seeds", "regressions"] {
        let dir = fuzz_dir().join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for path in files {
            // A running fuzzer may remove a file it has just replaced by a smaller one.
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            let outcome = std::panic::catch_unwind(|| check(&data));
            if let Err(panic) = outcome {
                eprintln!("fuzz input {} failed", path.display());
                std::panic::resume_unwind(panic);
            }
            count += 1;
        }
    }
    count
}

#[test]
fn frame_decoder_corpus() {
    assert!(replay("frame_decoder", fuzz_checks::check_frame_decoder) > 0);
}

#[test]
fn handshake_request_corpus() {
    assert!(replay("handshake_request", fuzz_checks::check_handshake_request) > 0);
}

#[test]
fn handshake_response_corpus() {
    assert!(replay("handshake_response", fuzz_checks::check_handshake_response) > 0);
}

#[test]
fn deflate_corpus() {
    assert!(replay("deflate", fuzz_checks::check_deflate) > 0);
}

#[test]
fn conn_corpus() {
    assert!(replay("conn", fuzz_checks::check_conn) > 0);
}
