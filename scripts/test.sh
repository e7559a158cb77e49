#!/usr/bin/env bash
# Runs every test: format, lints, the workspace tests, the dashboard in a headless browser, the
# no_std crates built for the MCU, the QEMU firmware tests, and a compile check of the fuzz
# targets. Stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A one-shot build gains nothing from the incremental cache, which would double the target dir.
export CARGO_INCREMENTAL=0

MCU=thumbv7em-none-eabihf
passed=0
step() {
  local name=$1; shift
  echo "== $name"
  local t0=$SECONDS
  "$@"
  passed=$((passed + 1))
  echo "== $name: ok in $((SECONDS - t0)) s"
}
qemu() { timeout 120 cargo run -q -p qemu-mps2 --target $MCU --profile mcu --bin "$1"; }

step "format" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "clippy (all features)" cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
step "clippy (no_std device crates)" cargo clippy --locked -p lwm2m-client -p suit-manifest -p lwm2m-core -p delta-patch -p cbor-read --no-default-features -- -D warnings
step "workspace tests" cargo test --workspace --all-features --locked
# The binaries the step above built (target/debug), in headless Chromium; no second build.
step "dashboard in headless Chromium (screenshot target/dashboard.png)" node tests/browser/dashboard.mjs
step "no_std crates for $MCU" cargo build --locked --target $MCU -p cbor-read -p lwm2m-core -p lwm2m-client -p suit-manifest -p delta-patch --no-default-features
step "board firmware lints ($MCU)" cargo clippy --locked -p qemu-mps2 -p nrf52840 --target $MCU --profile mcu --bins -- -D warnings
step "nRF52840 board image builds" cargo build --locked -p nrf52840 --target $MCU --profile mcu
step "QEMU: SUIT verify on Cortex-M4" qemu suit-verify
step "QEMU: a whole update by the device engine on Cortex-M4" qemu engine-update
step "QEMU: a delta update by the device engine on Cortex-M4" qemu engine-delta
# The device's footprint (README "Footprint"): lwm2m-core's float-free build, the verifier's cost,
# and the nRF52840 image: no float code, engine + CoAP + SUIT, peak stack and engine RAM ceilings.
step "footprint (no floats, flash, RAM, stack)" bash -c 'cargo test -q --locked -p lwm2m-core --test no_float && scripts/mcu-size.sh && scripts/footprint.sh --check'
# The board on OpenThread (feature `thread`, README "Thread (OpenThread)"): its lints and its image.
# openthread-sys compiles OpenThread + mbedTLS for $MCU with clang, CMake and Ninja (setup.sh);
# minutes on a cold target dir, seconds once cached. After the footprint step, which wants the
# default image in the same place.
step "nRF52840 board image on OpenThread (feature thread)" bash -c "cargo clippy --locked -p nrf52840 --target $MCU --profile mcu --features thread --bins -- -D warnings && cargo build --locked -p nrf52840 --target $MCU --profile mcu --features thread && arm-none-eabi-size \${CARGO_TARGET_DIR:-target}/$MCU/mcu/nrf52840"
step "benchmark smoke run (debug build, output in target/bench-smoke)" bash -c 'cargo build -q --locked -p otafleet-bench -p lwm2m-server && target/debug/otafleet-bench --smoke'
step "fuzz targets compile" bash -c 'for d in lwm2m-core/fuzz suit-manifest/fuzz; do cargo check -q --manifest-path $d/Cargo.toml --target-dir target/fuzz-check; done'
echo "steps: $passed passed, 0 failed"
