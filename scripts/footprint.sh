#!/usr/bin/env bash
# Footprint of the nRF52840 firmware (boards/nrf52840, profile mcu: opt-level "z", LTO, one codegen
# unit): flash (.text + .rodata) split by what the code is for, static RAM (.data + .bss), the
# engine's size_of, and the engine's peak stack measured under QEMU (engine-update).
#
# Method: `arm-none-eabi-nm --size-sort -S -C` lists every sized symbol of the ELF with its
# section type (t/T text, r/R rodata, d/D data, b/B bss) and its demangled Rust path. Each symbol
# is attributed to a bucket by the crate its path starts with (for `<Type as Trait>::f`, the crate
# of `Type`; for `core::ptr::drop_in_place<T>`, core). This is approximate: with LTO, code is
# inlined into its caller and is counted where it landed, e.g. the async task bodies (our driver
# loop, embassy-net's runner, the radio glue, with whatever they inlined) all sit in
# `embassy_executor::raw::TaskStorage<F>::poll`, reported on their own line; generic code
# instantiated for our types counts for the crate that defines it (heapless, core); and bytes
# between symbols (alignment, literal pools not covered by a symbol) are not counted, which is
# why the buckets add up to a little less than the section sizes.
#
# Usage: scripts/footprint.sh [--no-qemu]
set -euo pipefail
cd "$(dirname "$0")/.."
MCU=thumbv7em-none-eabihf
TARGET_DIR=${CARGO_TARGET_DIR:-target}
ELF=$TARGET_DIR/$MCU/mcu/nrf52840

cargo build -q --locked -p nrf52840 --target $MCU --profile mcu 2>&1 | grep -v 'OTAFLEET_TRUST_KEY not set' || true
[ -f "$ELF" ] || { echo "footprint: $ELF was not built" >&2; exit 1; }

echo "== nRF52840 firmware ($ELF, profile mcu)"
arm-none-eabi-size -A "$ELF" | awk '$1 ~ /^\.(vector_table|otaf_header|text|rodata|data|bss|uninit)$/ {printf "  %-14s %8d\n", $1, $2}'

python3 - "$ELF" <<'EOF'
import re, subprocess, sys

elf = sys.argv[1]
run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

# The engine's size_of: the OTAFLEET_ENGINE_SIZE constant the firmware keeps (4 bytes, LE).
addr = next(int(l.split()[0], 16) for l in run("arm-none-eabi-nm", elf).splitlines()
            if l.endswith(" OTAFLEET_ENGINE_SIZE"))
engine_size = None
for line in run("arm-none-eabi-objdump", "-h", elf).splitlines():
    f = line.split()
    if len(f) >= 6 and f[1] in (".rodata", ".text"):
        size, vma, off = int(f[2], 16), int(f[3], 16), int(f[5], 16)
        if vma <= addr < vma + size:
            with open(elf, "rb") as fh:
                fh.seek(off + addr - vma)
                engine_size = int.from_bytes(fh.read(4), "little")
            break

RULES = [
    ("coap", r"(lwm2m_core::(coap|block)|lwm2m_client::(exchange|rto))::"),
    ("engine", r"(lwm2m_client|lwm2m_core)::"),
    ("suit", r"(suit_manifest|p256|sha2|minicbor|crypto_bigint|primeorder|elliptic_curve|ecdsa|ff|group"
             r"|subtle|digest|block_buffer|crypto_common|hybrid_array|sec1|signature|hmac|rfc6979)::"),
    ("storage", r"(embassy_boot|sequential_storage|embassy_embedded_hal|embedded_storage|embassy_nrf::nvmc)::"),
    ("net", r"(embassy_net|smoltcp|embassy_net_driver_channel|embassy_net_driver|embassy_nrf::radio"
            r"|nrf52840::radio)::"),
    ("tasks", r"embassy_executor::raw::TaskStorage<F>::poll"),
]
LABELS = {
    "engine": "engine: lwm2m-client + lwm2m-core (registration, Object 5, objects, content formats, download, SUIT glue)",
    "coap": "CoAP: lwm2m_core::coap + ::block, lwm2m_client::exchange + ::rto",
    "suit": "SUIT verification: suit_manifest, p256, sha2, minicbor, crypto-bigint, primeorder, elliptic-curve, ...",
    "storage": "slots + persisted record: embassy-boot, sequential-storage, embassy-embedded-hal, NVMC",
    "net": "network: embassy-net, smoltcp (6LoWPAN), driver channel, nRF radio + our glue",
    "tasks": "async task bodies (TaskStorage::poll: driver loop, net runner, radio loop + what they inlined)",
    "rest": "rest: core/compiler_builtins (incl. float formatting), embassy-executor/time/nrf HAL, cortex-m",
}

def bucket(name):
    n = name.lstrip("<")  # <Type as Trait>::f: the crate of Type
    for b, rx in RULES:
        if re.match(rx, n):
            return b
    return "rest"

FLOAT = re.compile(r"(core::num::(flt2dec|dec2flt|bignum|diy_float|fmt)|core::fmt::float|<f(32|64) as |__aeabi_[df]|__aeabi_[uil]*2[df]|__(add|sub|mul|div|cmp|eq|ne|lt|le|gt|ge|un|fix|float|extend|trunc|pow)[a-z]*[sd]f|float::)")
text, ro, ram = {}, {}, []
floats = 0
for line in run("arm-none-eabi-nm", "--size-sort", "-S", "-C", elf).splitlines():
    f = line.split(None, 3)
    if len(f) < 4:
        continue
    size, kind, name = int(f[1], 16), f[2], f[3]
    if kind in "tTrR" and bucket(name) == "rest" and FLOAT.search(name.lstrip("<")):
        floats += size
    if kind in "tT":
        text[bucket(name)] = text.get(bucket(name), 0) + size
    elif kind in "rR":
        ro[bucket(name)] = ro.get(bucket(name), 0) + size
    elif kind in "bBdD":
        ram.append((size, name))

print("\n== flash by bucket (sizes of the symbols attributed to each, bytes)")
print(f"  {'.text':>8} {'.rodata':>7} {'sum':>8}  bucket")
total = {}
for b in ["engine", "coap", "suit", "storage", "net", "tasks", "rest"]:
    t, r = text.get(b, 0), ro.get(b, 0)
    total[b] = t + r
    print(f"  {t:8d} {r:7d} {t + r:8d}  {LABELS[b]}")
tt, rr = sum(text.values()), sum(ro.values())
print(f"  {tt:8d} {rr:7d} {tt + rr:8d}  all sized symbols")
print(f"  (of \"rest\": {floats} bytes are f64 formatting/parsing and soft-float helpers, pulled in, it")
print("   seems, by lwm2m-core's Value::Float text/SenML codecs on the engine's generic read path; no")
print("   resource of the engine is a float)")

goal = total["engine"] + total["coap"] + total["suit"]
verdict = lambda n, cap: "met" if n <= cap else "NOT met"
print("\n== goal: engine + CoAP + Object 5 + SUIT verification <= 48 KiB (49152 bytes) of flash")
print(f"  engine + CoAP + SUIT:             {goal:6d} bytes ({goal / 1024:.1f} KiB): {verdict(goal, 49152)}")
g2 = goal + total["storage"]
print(f"  ... + slots and persisted record: {g2:6d} bytes ({g2 / 1024:.1f} KiB): {verdict(g2, 49152)}")

print(f"\n== static RAM (.data + .bss symbols): {sum(s for s, _ in ram)} bytes; the largest:")
for size, name in sorted(ram, reverse=True)[:8]:
    print(f"  {size:6d}  {name}")
print(f"\n== size_of::<Engine<FlashPlatform<Nvmc>>>() = {engine_size} bytes (inside the main task's future, in .bss)")
print(f"   goal: engine <= 8 KiB (8192 bytes) of static RAM: {verdict(engine_size, 8192)}")
EOF

if [ "${1:-}" != "--no-qemu" ]; then
  echo
  echo "== engine peak stack (QEMU mps2-an386, engine-update, profile mcu)"
  timeout 120 cargo run -q --locked -p qemu-mps2 --target $MCU --profile mcu --bin engine-update \
    | grep -E 'peak stack|handle_datagram with|parts measured|size_of|PASS|FAIL' | sed 's/^ */  /'
fi
