//! Fuzz target `conn`: see `check_conn` in yamabiko/tests/fuzz_checks/mod.rs for the
//! invariants (the same function replays the corpus under `cargo test`).
#![no_main]

#[path = "../../yamabiko/tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_conn(data));
