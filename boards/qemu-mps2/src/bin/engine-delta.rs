//! QEMU test: a delta update by the device engine on an emulated Cortex-M4 (no heap). ACTIVE holds
//! the precursor 1.0.0; the release's manifest names it (digest and size) and its payload is a
//! detools sequential patch (heatshrink) that turns it into 2.0.0, a rebuild of it. The engine
//! checks the precursor against the running image, applies the patch block by block into DFU
//! (reading the old image from ACTIVE), and the new image is swapped in, confirmed and kept, byte
//! for byte. The rig ([`qemu_mps2::engine_rig`]) runs the real engine against a scripted server
//! that serves the patch, and prints the engine's stack and RAM; the release is made by build.rs.
//! Exits with EXIT_SUCCESS only if every check passed.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "engine-delta is firmware: run it with `cargo run -p qemu-mps2 --target thumbv7em-none-eabihf --profile mcu --bin engine-delta`"
    );
}

#[cfg(target_os = "none")]
mod mcu {
    use cortex_m_rt::entry;
    use panic_semihosting as _;
    use qemu_mps2::engine_rig::{self, Release};

    include!(concat!(env!("OUT_DIR"), "/release.rs"));

    static RELEASE: Release = Release {
        factory: include_bytes!(concat!(env!("OUT_DIR"), "/delta-old.img")),
        envelope: include_bytes!(concat!(env!("OUT_DIR"), "/delta.suit")),
        payload: include_bytes!(concat!(env!("OUT_DIR"), "/delta.patch")),
        new_image: include_bytes!(concat!(env!("OUT_DIR"), "/delta-new.img")),
        trust: include_bytes!(concat!(env!("OUT_DIR"), "/trust.sec1")),
        vendor_id: VENDOR_ID,
        class_id: CLASS_ID,
        sequence: SEQUENCE,
        old_version: OLD_VERSION,
        new_version: NEW_VERSION,
    };

    #[entry]
    fn main() -> ! {
        engine_rig::run_and_exit("engine-delta", &RELEASE)
    }
}
