//! Code-size probe: the SUIT verifier (envelope decode, COSE_Sign1 ES256/ESP256, SHA-256, manifest
//! decode) and nothing else. Its text size minus `size-baseline`'s is what the verifier costs in
//! flash. The input comes through a volatile read so the compiler cannot fold the check away.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "size-verifier is firmware: build it with --target thumbv7em-none-eabihf --profile mcu"
    );
}

#[cfg(target_os = "none")]
mod mcu {
    use cortex_m_rt::entry;
    use cortex_m_semihosting::debug;
    use panic_halt as _; // production-like: no panic message formatting

    static INPUT: [u8; 512] = [0; 512];
    static KEY: [u8; 65] = [4; 65];

    #[entry]
    fn main() -> ! {
        let input: &[u8; 512] = core::hint::black_box(&INPUT);
        let key: &[u8; 65] = core::hint::black_box(&KEY);
        let ok = suit_manifest::TrustAnchor::from_sec1(key).ok().map(|a| {
            suit_manifest::verify(input, &[a])
                .map(|m| m.sequence_number())
                .is_ok()
        });
        debug::exit(if ok == Some(true) {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        loop {
            cortex_m::asm::wfi();
        }
    }
}
