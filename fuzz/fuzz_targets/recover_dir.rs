//! Recovery of a damaged directory of 1-4 segment files, never a panic, repeatable (I5)
//! (`tradewal_tests::model::fuzz_recover_dir`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tradewal_tests::model::fuzz_recover_dir(data);
});
