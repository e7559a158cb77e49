//! `lwm2m-client settings-image`: the factory's SETTINGS partition for the Thread board, read back
//! the way the board reads it (`persist::load_blob` over `Layout::NRF52840`), and bad input refused
//! with no file.
#![cfg(feature = "std")]

use std::process::{Command, Output};

use embedded_storage::nor_flash::NorFlash;
use lwm2m_client::storage::flash::HeapFlash;
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use lwm2m_client::storage::persist::{self, board_key};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .arg("settings-image")
        .args(args)
        .output()
        .expect("run lwm2m-client")
}

#[test]
fn the_partition_holds_the_dataset_and_the_pskd() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("settings.bin");
    let dataset = "0e080000000000010000000300000f35060004001fffe0";
    let o = cli(&[
        "--thread-dataset",
        dataset,
        "--thread-pskd",
        "J01NME",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let image = std::fs::read(&out).unwrap();
    let layout = Layout::NRF52840;
    let settings = layout.settings();
    assert_eq!(image.len(), (settings.end - settings.start) as usize);

    // Flashed at the partition's start of an erased chip.
    let mut flash = HeapFlash::new(layout.end() as usize);
    flash.write(settings.start, &image).unwrap();
    let dev = DeviceFlash::new(flash, Layout::NRF52840).unwrap();
    let mut buf = [0u8; 254];
    let n = persist::load_blob(&dev, board_key::THREAD_DATASET, &mut buf)
        .unwrap()
        .unwrap();
    let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, dataset);
    let n = persist::load_blob(&dev, board_key::THREAD_PSKD, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"J01NME");
    // Nothing else: no firmware record yet.
    assert_eq!(persist::load(&dev), Ok(None));
}

#[test]
fn bad_input_is_refused_with_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("settings.bin");
    let o = out.to_str().unwrap();
    for args in [
        vec!["-o", o],
        vec!["--thread-dataset", "0e0", "-o", o],
        vec!["--thread-dataset", &"00".repeat(255), "-o", o],
        vec!["--thread-pskd", "short", "-o", o],
        vec!["--thread-pskd", "QUIZ000", "-o", o],
    ] {
        let r = cli(&args);
        assert!(!r.status.success(), "{args:?} accepted");
        assert!(!out.exists(), "{args:?} left a file");
    }
}
