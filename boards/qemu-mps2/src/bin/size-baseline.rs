//! Code-size probe: the same runtime as `size-verifier` (vector table, semihosting exit, panic
//! handler) without the verifier.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "size-baseline is firmware: build it with --target thumbv7em-none-eabihf --profile mcu"
    );
}

#[cfg(target_os = "none")]
mod mcu {
    use cortex_m_rt::entry;
    use cortex_m_semihosting::debug;
    use panic_halt as _; // production-like: no panic message formatting

    static INPUT: [u8; 512] = [0; 512];

    #[entry]
    fn main() -> ! {
        let input: &[u8; 512] = core::hint::black_box(&INPUT);
        debug::exit(if input[0] == 1 {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        loop {
            cortex_m::asm::wfi();
        }
    }
}
