#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| itra_data::fuzzing::idx_labels(data));
