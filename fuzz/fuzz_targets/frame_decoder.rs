//! Fuzz target `frame_decoder`: see `check_frame_decoder` in yamabiko/tests/fuzz_checks/mod.rs for the
//! invariants (the same function replays the corpus under `cargo test`).
#![no_main]

#[path = "../../yamabiko/tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_frame_decoder(data));
