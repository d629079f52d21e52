#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    labor_fuzz::init();
    labor_fuzz::toml_configs(data);
});
