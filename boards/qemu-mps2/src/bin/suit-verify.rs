//! QEMU test: verifies SUIT example 0 (and refuses a tampered copy) on an emulated Cortex-M4 with
//! suit-manifest's no_std verifier, printing the verifier's peak stack use. Exits non-zero on any
//! wrong verdict, so `cargo run` under the QEMU runner is a test.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "suit-verify is firmware: run it with `cargo run -p qemu-mps2 --bin suit-verify --target thumbv7em-none-eabihf`"
    );
}

#[cfg(target_os = "none")]
mod mcu {
    use cortex_m_rt::entry;
    use cortex_m_semihosting::{debug, hprintln};
    use panic_semihosting as _;
    #[cfg(has_vectors)]
    use qemu_mps2::stack;

    #[cfg(has_vectors)]
    fn run() -> bool {
        use suit_manifest::{Error, TrustAnchor, verify};
        static EXAMPLE0: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/example0.cbor"));
        static TAMPERED: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/neg-bad-signature.cbor"));
        static KEY_HEX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/public_key.sec1.hex"));

        let mut key = [0u8; 65];
        for (i, out) in key.iter_mut().enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            *out = digit(KEY_HEX[2 * i]) << 4 | digit(KEY_HEX[2 * i + 1]);
        }
        let Ok(anchor) = TrustAnchor::from_sec1(&key) else {
            hprintln!("FAIL: the example public key does not parse");
            return false;
        };
        let anchors = [anchor];
        let (good, stack_used) =
            stack::measure(|| verify(EXAMPLE0, &anchors).map(|m| m.sequence_number()));
        let (bad, _) = stack::measure(|| verify(TAMPERED, &anchors).map(|m| m.sequence_number()));
        // The share of the P-256 signature check alone: example 0's signature sits at bytes
        // 57..121 (after the envelope, wrapper and COSE headers); any prehash exercises the same path.
        let (_, p256_used) = stack::measure(|| {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            let sig = EXAMPLE0
                .get(57..121)
                .and_then(|s| p256::ecdsa::Signature::from_slice(s).ok());
            sig.map(|sig| anchors[0].key().verify_prehash(&[0x5a; 32], &sig).is_ok())
        });
        hprintln!("example0: {:?} (sequence number)", good);
        hprintln!(
            "verifier peak stack: {} bytes, of which the P-256 ECDSA check alone: {} bytes",
            stack_used,
            p256_used
        );
        hprintln!("tampered example0: {:?}", bad);
        good == Ok(0) && bad == Err(Error::BadSignature)
    }

    #[cfg(not(has_vectors))]
    fn run() -> bool {
        hprintln!("NOTICE: skipped, the shared SUIT vectors were not found at build time");
        true
    }

    #[entry]
    fn main() -> ! {
        if run() {
            hprintln!("PASS suit-verify on Cortex-M4 (mps2-an386)");
            debug::exit(debug::EXIT_SUCCESS);
        } else {
            hprintln!("FAIL suit-verify");
            debug::exit(debug::EXIT_FAILURE);
        }
        loop {
            cortex_m::asm::wfi();
        }
    }
}
