#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| itra_data::fuzzing::stl10_images(data));
