//! Fuzz target `handshake_response`: see `check_handshake_response` in yamabiko/tests/fuzz_checks/mod.rs for the
//! invariants (the same function replays the corpus under `cargo test`).
#![no_main]

#[path = "../../yamabiko/tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_handshake_response(data));
