//! Model-based: the engine on the simulated disk beside a reference model, with an I/O-error
//! countdown, power cuts and process crashes (`tradewal_tests::model::fuzz_model`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tradewal_tests::model::fuzz_model(data);
});
