//! QEMU test: a complete pull update of a full image on an emulated Cortex-M4 (no heap): the
//! factory image 1.0.0, then the 16 KiB image 2.0.0 fetched block by block into DFU, swapped in,
//! confirmed and kept. The rig ([`qemu_mps2::engine_rig`]) runs the real engine against a scripted
//! server and prints the engine's stack and RAM; the release is made by build.rs. Exits with
//! EXIT_SUCCESS only if every check passed.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "engine-update is firmware: run it with `cargo run -p qemu-mps2 --target thumbv7em-none-eabihf --profile mcu --bin engine-update`"
    );
}

#[cfg(target_os = "none")]
mod mcu {
    use cortex_m_rt::entry;
    use panic_semihosting as _;
    use qemu_mps2::engine_rig::{self, Release};

    include!(concat!(env!("OUT_DIR"), "/release.rs"));

    static RELEASE: Release = Release {
        factory: include_bytes!(concat!(env!("OUT_DIR"), "/factory.img")),
        envelope: include_bytes!(concat!(env!("OUT_DIR"), "/update.suit")),
        payload: include_bytes!(concat!(env!("OUT_DIR"), "/update.img")),
        new_image: include_bytes!(concat!(env!("OUT_DIR"), "/update.img")),
        trust: include_bytes!(concat!(env!("OUT_DIR"), "/trust.sec1")),
        vendor_id: VENDOR_ID,
        class_id: CLASS_ID,
        sequence: SEQUENCE,
        old_version: OLD_VERSION,
        new_version: NEW_VERSION,
    };

    #[entry]
    fn main() -> ! {
        engine_rig::run_and_exit("engine-update", &RELEASE)
    }
}
