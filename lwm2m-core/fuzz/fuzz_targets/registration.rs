//! Register / Update query options: never panic; accepted parameters are written out as options
//! and parse back to the same parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::registration::{RegisterParams, UpdateParams};

fuzz_target!(|data: &[u8]| {
    // Option values are separated by '&' in the fuzz input.
    let options: Vec<&[u8]> = data.split(|b| *b == b'&').collect();
    if let Ok(p) = RegisterParams::parse(options.iter().copied()) {
        let written: Vec<String> = p.options().map(|o| o.to_string()).collect();
        let again = RegisterParams::parse(written.iter().map(String::as_str));
        assert_eq!(again, Ok(p));
        assert_eq!(again.map(|a| a.queue_mode()), Ok(p.queue_mode()));
    }
    if let Ok(p) = UpdateParams::parse(options.iter().copied()) {
        let written: Vec<String> = p.options().map(|o| o.to_string()).collect();
        assert_eq!(
            UpdateParams::parse(written.iter().map(String::as_str)),
            Ok(p)
        );
    }
});
