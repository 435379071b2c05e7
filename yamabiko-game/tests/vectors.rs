//! The shared vectors in `tests/vectors/sim.json` are what the simulation computes
//! today. The page's code replays them under `node --test` (tests/js/sim.test.mjs);
//! this test makes sure they are current. After a deliberate change of the rules:
//! `UPDATE_VECTORS=1 cargo test -p yamabiko-game --test vectors`.

use std::path::PathBuf;

#[test]
fn vectors_are_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/sim.json");
    let fresh = yamabiko_game::sim::vectors::generate_text();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(&path, &fresh).expect("write the vectors");
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == fresh,
        "{} is not what the simulation computes: run UPDATE_VECTORS=1 cargo test -p yamabiko-game --test vectors, then node --test yamabiko-game/tests/js/",
        path.display()
    );
}
