#!/usr/bin/env bash
# Prints what the SUIT verifier costs in flash on the Cortex-M4 (opt-level "z", LTO): the text size
# and constants of a firmware that only verifies an envelope, minus that of the same firmware without it.
set -euo pipefail
cd "$(dirname "$0")/.."
MCU=thumbv7em-none-eabihf
cargo build -q --locked -p qemu-mps2 --target $MCU --profile mcu --bin size-verifier --bin size-baseline
dir=${CARGO_TARGET_DIR:-target}/$MCU/mcu
text() { arm-none-eabi-size -A "$dir/$1" | awk '$1==".text"||$1==".rodata"{n+=$2} END{print n}'; }
v=$(text size-verifier); b=$(text size-baseline)
echo "SUIT verifier (decode + COSE ES256/ESP256 + SHA-256 + manifest): $((v - b)) bytes of flash (.text+.rodata $v - baseline $b)"

# The delta applier (delta-patch: detools sequential, heatshrink + none), same method.
cargo build -q --locked -p qemu-mps2 --target $MCU --profile mcu --bin size-delta
d=$(text size-delta)
echo "delta applier (detools sequential, heatshrink): $((d - b)) bytes of flash (.text+.rodata $d - baseline $b)"
