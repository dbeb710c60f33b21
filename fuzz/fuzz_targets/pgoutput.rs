//! Fuzz target `pgoutput`: see `walstream_proto::internal::fuzzing::fuzz_pgoutput` for the input layout
//! and the oracles.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    walstream_proto::internal::fuzzing::fuzz_pgoutput(data);
});
