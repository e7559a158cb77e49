//! `lwm2m-client make-image --payload`: a real firmware binary (machine code from an executable's
//! `.text`) wrapped as a bootable image by the real command line. The image is the 64-byte header
//! and then the payload byte for byte; the device takes it as an update (staged, trial boot,
//! self-test, confirm) and runs it. `--size` with `--payload`, and a payload larger than the
//! slot, are refused with a reason and no file.
#![cfg(feature = "std")]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use lwm2m_client::image::{HEADER_LEN, ImageHeader, make_image};
use lwm2m_client::platform::BootOutcome;
use lwm2m_client::power_on::{PowerOn, install_factory, power_on};
use lwm2m_client::storage::file_flash::FileFlash;
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use lwm2m_client::storage::slots::{self, Staging};
use support::real_code;

fn cli_make_image(args: &[&str], payload: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .arg("make-image")
        .args(args)
        .arg("--payload")
        .arg(payload)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run lwm2m-client")
}

fn power_on_version(dev: &DeviceFlash<FileFlash>) -> (String, BootOutcome) {
    match power_on(dev).expect("power-on") {
        PowerOn::Run(info) => (info.running_version.to_string(), info.outcome),
        PowerOn::SelfTestFailed(v) => panic!("{v} failed its self-test"),
    }
}

#[test]
fn a_real_binary_is_carried_byte_exact_and_the_device_boots_it() {
    let tmp = tempfile::tempdir().unwrap();
    let payload = real_code::code(50_001, 4096);
    let (p, img) = (tmp.path().join("fw.bin"), tmp.path().join("fw.img"));
    std::fs::write(&p, &payload).unwrap();
    let out = cli_make_image(&["--version", "4.2.0"], &p, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(50065 bytes, version 4.2.0)"), "{stdout}");
    let image = std::fs::read(&img).unwrap();
    assert_eq!(image.len(), HEADER_LEN + payload.len());
    assert!(
        image[HEADER_LEN..] == payload[..],
        "the payload is not carried as it is"
    );
    let h = ImageHeader::parse(&image).expect("a header");
    assert_eq!(
        (h.version.as_str(), h.len, h.self_test_passes),
        ("4.2.0", 50_065, true)
    );

    // The host device's flash (the binary's layout), on the factory image, takes it as an
    // update: staged in DFU, a trial boot, its self-test passes, confirmed, and it runs.
    let layout = Layout::NRF52840;
    let file = FileFlash::create(tmp.path().join("dev.flash"), layout.end() as usize).unwrap();
    let dev = DeviceFlash::new(file, layout).unwrap();
    install_factory(&dev, &make_image("1.0.0", 32 * 1024, true).unwrap()).unwrap();
    assert_eq!(
        power_on_version(&dev),
        ("1.0.0".into(), BootOutcome::Normal)
    );
    let mut staging = Staging::new(&dev);
    for (page, chunk) in image.chunks(4096).enumerate() {
        staging.erase_page(page as u32).unwrap();
        let mut padded = chunk.to_vec();
        padded.resize(chunk.len().next_multiple_of(4), 0xff);
        staging.write((page * 4096) as u32, &padded).unwrap();
    }
    slots::mark_for_test_boot(&dev).unwrap();
    assert_eq!(
        power_on_version(&dev),
        ("4.2.0".into(), BootOutcome::Confirmed)
    );
    let mut active = vec![0; image.len()];
    slots::read_active(&dev, 0, &mut active).unwrap();
    assert!(active == image, "ACTIVE is not the image");
    // Confirmed: the next reset keeps it.
    assert_eq!(
        power_on_version(&dev),
        ("4.2.0".into(), BootOutcome::Normal)
    );
}

#[test]
fn size_with_payload_and_a_payload_beyond_the_slot_are_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, img) = (tmp.path().join("fw.bin"), tmp.path().join("fw.img"));
    std::fs::write(&p, real_code::code(1000, 0)).unwrap();
    let out = cli_make_image(&["--version", "1.0.0", "--size", "4096"], &p, &img);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--size and --payload exclude each other"),
        "{err}"
    );
    assert!(!img.exists());

    // One byte too many for the 488 KiB slot.
    let slot = Layout::NRF52840.slot_size() as usize;
    std::fs::write(&p, vec![0x5a; slot - HEADER_LEN + 1]).unwrap();
    let out = cli_make_image(&["--version", "1.0.0"], &p, &img);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("would be {} bytes", slot + 1))
            && err.contains(&format!("more than the {slot} bytes of the device's slot"))
            && err.contains("objcopy -O binary"),
        "{err}"
    );
    assert!(!img.exists());
    // Exactly the slot is fine.
    std::fs::write(&p, vec![0x5a; slot - HEADER_LEN]).unwrap();
    let out = cli_make_image(&["--version", "1.0.0"], &p, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&img).unwrap().len(), slot as u64);
}

/// The device command with `--factory-image`, against a server that never answers (a closed
/// port): enough for the factory set-up, which happens before the first datagram.
fn run_device(dir: &Path, factory: &Path) -> std::process::Child {
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("a key");
    let pem = suit_manifest::keyfile::verifying_key_to_pem(key.verifying_key()).expect("a PEM");
    std::fs::write(dir.join("key.pub.pem"), pem).unwrap();
    Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .args(["--server", "coap://127.0.0.1:9", "--endpoint", "factory-1"])
        .arg("--flash")
        .arg(dir.join("dev.flash"))
        .arg("--trust")
        .arg(dir.join("key.pub.pem"))
        .args(["--vendor-id", "acme.example", "--class-id", "sensor-rev-b"])
        .arg("--factory-image")
        .arg(factory)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run lwm2m-client")
}

#[test]
fn a_factory_image_starts_a_new_flash_file_and_a_file_that_is_no_image_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Not an image: raw machine code without the header. Refused before any flash file exists.
    let raw = tmp.path().join("raw.bin");
    std::fs::write(&raw, real_code::code(2048, 7)).unwrap();
    let out = run_device(tmp.path(), &raw).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("is not a device image") && err.contains("make-image"),
        "{err}"
    );
    assert!(!tmp.path().join("dev.flash").exists());
    // A cut image (its header promises more bytes than the file has) is refused too.
    let (p, img) = (tmp.path().join("fw.bin"), tmp.path().join("fw.img"));
    std::fs::write(&p, real_code::code(3000, 11)).unwrap();
    assert!(
        cli_make_image(&["--version", "7.1.0"], &p, &img)
            .status
            .success()
    );
    let image = std::fs::read(&img).unwrap();
    let cut = tmp.path().join("cut.img");
    std::fs::write(&cut, &image[..image.len() - 100]).unwrap();
    let out = run_device(tmp.path(), &cut).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("the image is cut"),
        "{err}"
    );
    assert!(!tmp.path().join("dev.flash").exists());

    // A real image: the new flash file's ACTIVE holds it byte for byte and it boots.
    let mut child = run_device(tmp.path(), &img);
    let flash = tmp.path().join("dev.flash");
    // The line comes once the factory image is written; then the device only tries to register.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let installed = rx
        .iter()
        .take(50)
        .find(|l| l.contains("new flash file"))
        .map(|l| l.contains("factory image 7.1.0 installed"));
    child.kill().ok();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        installed,
        Some(true),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = Layout::NRF52840;
    let dev = DeviceFlash::new(
        FileFlash::open_or_create(&flash, l.end() as usize).unwrap(),
        l,
    )
    .unwrap();
    let mut active = vec![0u8; image.len()];
    slots::read_active(&dev, 0, &mut active).expect("read ACTIVE");
    assert!(active == image, "ACTIVE is not the factory image");
    assert_eq!(power_on_version(&dev).0, "7.1.0");
}
