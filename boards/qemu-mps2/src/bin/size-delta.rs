//! Code-size probe: the delta applier (detools sequential patch, heatshrink and none) and nothing
//! else. Its text size minus `size-baseline`'s is what the applier costs in flash; the `Applier`'s
//! size is its RAM. Inputs come through `black_box` so the compiler cannot fold the work away.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("size-delta is firmware: build it with --target thumbv7em-none-eabihf --profile mcu");
}

#[cfg(target_os = "none")]
mod mcu {
    use cortex_m_rt::entry;
    use cortex_m_semihosting::debug;
    use delta_patch::{Applier, NewImage};
    use panic_halt as _; // production-like: no panic message formatting

    // One input for both, as big as size-baseline's, so only code differs.
    static INPUT: [u8; 512] = [0; 512];

    /// Stands in for the staging slot: folds what is written into a checksum.
    struct Sink(u32);

    impl NewImage for Sink {
        type Error = ();
        fn write(&mut self, bytes: &[u8]) -> Result<(), ()> {
            for b in bytes {
                self.0 = self.0.rotate_left(5) ^ u32::from(*b);
            }
            Ok(())
        }
    }

    #[entry]
    fn main() -> ! {
        let patch: &[u8; 512] = core::hint::black_box(&INPUT);
        let mut old: &[u8] = core::hint::black_box(&INPUT);
        let mut applier = Applier::new(512, 4096);
        let mut sink = Sink(0);
        let ok = applier.feed(patch, &mut old, &mut sink).is_ok() && applier.finish().is_ok();
        core::hint::black_box(sink.0);
        debug::exit(if ok {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        loop {
            cortex_m::asm::wfi();
        }
    }
}
