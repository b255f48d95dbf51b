//! Arbitrary bytes (raw, or edits of a valid template segment) into `SegmentDecoder` and `LogScanner`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::decode_segment(data));
