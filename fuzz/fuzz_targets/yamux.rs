#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| libp2p_fuzz::yamux(data));
