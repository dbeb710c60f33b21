//! Fuzz target `values_binary`: see `walstream_proto::internal::fuzzing::fuzz_value_binary` for the input layout
//! and the oracles.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    walstream_proto::internal::fuzzing::fuzz_value_binary(data);
});
