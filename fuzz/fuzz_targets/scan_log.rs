//! Arbitrary multi-segment logs (raw pieces, or edits, drops and swaps of a valid template log) into `LogScanner`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::scan_log(data));
