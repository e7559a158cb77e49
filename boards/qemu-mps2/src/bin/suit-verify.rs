//! QEMU test: the device's SUIT verifier (suit-manifest with the Cortex-M4 assembly P-256) on an
//! emulated Cortex-M4 judges every SUIT test vector and every ES256 policy case, and must reach
//! the verdict the host's verifier (the `p256` crate) reached at build time on each (build.rs).
//! Prints each verdict and the peak stack of the verification, and exits non-zero on any
//! difference, so `cargo run` under the QEMU runner is a test.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "suit-verify is firmware: run it with `cargo run -p qemu-mps2 --bin suit-verify --target thumbv7em-none-eabihf`"
    );
}

#[cfg(target_os = "none")]
mod mcu {
    use core::fmt::Write as _;

    use cortex_m_rt::entry;
    use cortex_m_semihosting::{debug, hprintln};
    use heapless::String;
    use panic_semihosting as _;
    use qemu_mps2::stack;
    use suit_manifest::TrustAnchor;

    include!(concat!(env!("OUT_DIR"), "/policy.rs"));
    #[cfg(has_vectors)]
    include!(concat!(env!("OUT_DIR"), "/vectors.rs"));

    /// Tallies of one run.
    #[derive(Default)]
    struct Tally {
        same: u32,
        different: u32,
        positive: u32,
        negative: u32,
        peak_stack: usize,
    }

    impl Tally {
        /// Records one verdict against the host's and prints it.
        fn compare(&mut self, name: &str, device: &str, host: &str, stack: usize) {
            let same = device == host;
            if same {
                self.same += 1;
            } else {
                self.different += 1;
            }
            if host.starts_with("Ok") || host == "Valid" {
                self.positive += 1;
            } else {
                self.negative += 1;
            }
            self.peak_stack = self.peak_stack.max(stack);
            hprintln!(
                "  {} {}: device {}, host {} ({} B stack)",
                if same { "ok  " } else { "FAIL" },
                name,
                device,
                host,
                stack
            );
        }
    }

    /// `{:?}` of a verdict, as build.rs wrote the host's.
    fn debug(v: impl core::fmt::Debug) -> String<64> {
        let mut s = String::new();
        let _ = write!(s, "{v:?}");
        s
    }

    #[cfg(has_vectors)]
    fn vectors(tally: &mut Tally) {
        let Ok(anchor) = TrustAnchor::from_sec1(&SPEC_KEY) else {
            hprintln!("FAIL: the spec's public key does not parse");
            tally.different += 1;
            return;
        };
        let anchors = [anchor];
        for (name, bytes, host) in VECTORS {
            let (verdict, used) = stack::measure(|| {
                suit_manifest::verify(bytes, &anchors)
                    .and_then(|m| m.check_severed_elements().map(|()| m.sequence_number()))
            });
            tally.compare(name, &debug(verdict), host, used);
        }
    }

    #[cfg(not(has_vectors))]
    fn vectors(_: &mut Tally) {
        hprintln!("NOTICE: SUIT vectors skipped, they were not found at build time");
    }

    fn policy(tally: &mut Tally) {
        for (name, key, prehash, signature, host) in POLICY {
            let (verdict, used) = stack::measure(|| match TrustAnchor::from_sec1(key) {
                Err(_) => "BadKey",
                Ok(a) if a.verify_prehash(prehash, signature) => "Valid",
                Ok(_) => "Invalid",
            });
            tally.compare(name, verdict, host, used);
        }
    }

    fn run() -> bool {
        let mut t = Tally::default();
        hprintln!("SUIT vectors (verify + severed elements; Ok(sequence number) or the error):");
        vectors(&mut t);
        let vector_peak = t.peak_stack;
        hprintln!("ES256 policy cases (key decode + P-256 check of a prehash):");
        t.peak_stack = 0;
        policy(&mut t);
        hprintln!(
            "{} verdicts equal to the host's, {} different ({} positive, {} negative)",
            t.same,
            t.different,
            t.positive,
            t.negative
        );
        hprintln!(
            "verifier peak stack: {} bytes (whole envelope), of which the P-256 check alone: {} bytes",
            vector_peak,
            t.peak_stack
        );
        t.different == 0 && t.same > 0
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
