#!/usr/bin/env bash
# The device's footprint: the nRF52840 firmware (boards/nrf52840, profile mcu: opt-level "z", fat
# LTO, one codegen unit) split into parts, its static RAM, the engine's size_of and the engine's
# peak stack (QEMU mps2-an386, engine-update, by painting).
#
# How flash is attributed to a part (scripts/footprint.py has the details): by source, from the
# ELF's debug info. Every instruction belongs to the first function of its inline chain that a
# part claims (a part is a list of crate/symbol patterns, PARTS in footprint.py), so engine code
# that LTO inlined into the board's async task still counts for the engine; code of core or
# compiler_builtins that only one part calls counts for that part; what several parts share
# (memcpy, integer division, the executor) or reach only through pointers stays in `runtime`.
# Constants go by symbol name. The parts add up to .text + .rodata exactly.
#
# Parts: engine (lwm2m-client + lwm2m-core: registration, Object 1/3/5, content formats, the
# pull/push download, persisted record logic), coap (lwm2m_core::coap + ::block,
# lwm2m_client::exchange + ::rto), suit (suit-manifest, sha2, minicbor, the P-256 assembly), slots
# (embassy-boot, sequential-storage, the NVMC driver), network (embassy-net, smoltcp 6LoWPAN, the
# radio and its glue), platform (executor, time, HAL, the board's glue), runtime (shared core and
# compiler_builtins code). Parts that other issues add get their own key (oscore, delta_applier,
# download: the out-of-order block window, thread) and are 0 until their code is in the image.
#
# Usage: scripts/footprint.sh [--json] [--check] [--no-qemu] [--thread]
#   --json     one JSON object on stdout (bytes): engine, coap, suit, slots, network, ...,
#              total_flash, static_ram, engine_ram, peak_stack, goal (engine + coap + suit)
#   --check    exit 1 when the nRF52840 or QEMU engine image holds float formatting, parsing or
#              soft-float symbols, or a figure passes its ceiling below (CI runs this)
#   --no-qemu  skip the QEMU run (peak_stack is then null)
#   --thread   measure the `thread` build instead (OpenThread, feature `thread`): the `thread` part
#              is then OpenThread + mbedTLS + the openthread crate (boards/nrf52840/thread-symbols.txt).
#              Its image overwrites the default one in target/; the ceilings are the same.
set -euo pipefail
cd "$(dirname "$0")/.."

# Ceilings for --check. The goal of the footprint issue is engine + CoAP + SUIT <= 40 KiB; it is
# not reached yet (README "Footprint"), so CI guards the figure reached instead: raise it only
# with a reason, lower it when the figure falls.
GOAL_BYTES=40960
# Raised from 66 KiB when issues 13 and 15 landed their device code in the engine (the
# out-of-order download with its block map and pacing, delta releases in the pull path): 77 758.
# Lowered from 78 KiB when the engine and SUIT shed core's URI/IP parsing, the second copy of the
# block map, minicbor's generic skip and core's integer parser (README "Footprint"): 72 836.
# Lowered from 72 KiB when minicbor left the device (cbor-read and SenML's own head writer), the
# SUIT reader and maps read with fewer call sites, and core's forward CharSearcher went: 68 096.
GOAL_CEILING=${FOOTPRINT_GOAL_CEILING:-68608}   # 67 KiB
STACK_CEILING=6144                              # the goal (6 KiB), reached: 5 060
ENGINE_RAM_CEILING=8192                         # the goal (8 KiB), reached: 7 936

json=0 check=0 qemu=1 features=()
for arg in "$@"; do
  case $arg in
    --json) json=1 ;;
    --check) check=1 ;;
    --no-qemu) qemu=0 ;;
    --thread) features=(--features thread) ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "footprint: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

MCU=thumbv7em-none-eabihf
DIR=${CARGO_TARGET_DIR:-target}/$MCU/mcu
ELF=$DIR/nrf52840
QEMU_ELF=$DIR/engine-update

cargo build -q --locked -p nrf52840 --target $MCU --profile mcu "${features[@]}" 2>&1 \
  | grep -v 'OTAFLEET_TRUST_KEY not set' >&2 || true
[ -f "$ELF" ] || { echo "footprint: $ELF was not built (see the cargo output above)" >&2; exit 1; }

qemu_log=""
if [ $qemu -eq 1 ]; then
  qemu_log=$(timeout 300 cargo run -q --locked -p qemu-mps2 --target $MCU --profile mcu \
    --bin engine-update 2>&1) || {
    echo "$qemu_log" | tail -20 >&2
    echo "footprint: the QEMU engine-update run failed" >&2
    exit 1
  }
fi

ELF=$ELF QEMU_ELF=$QEMU_ELF JSON=$json CHECK=$check QEMU=$qemu QEMU_LOG=$qemu_log \
GOAL_BYTES=$GOAL_BYTES GOAL_CEILING=$GOAL_CEILING STACK_CEILING=$STACK_CEILING \
ENGINE_RAM_CEILING=$ENGINE_RAM_CEILING python3 - <<'EOF'
import json, os, re, subprocess, sys

env = os.environ
elf, qemu_elf = env["ELF"], env["QEMU_ELF"]
as_json, check, qemu = env["JSON"] == "1", env["CHECK"] == "1", env["QEMU"] == "1"
GOAL_BYTES, GOAL_CEILING = int(env["GOAL_BYTES"]), int(env["GOAL_CEILING"])
STACK_CEILING, ENGINE_RAM_CEILING = int(env["STACK_CEILING"]), int(env["ENGINE_RAM_CEILING"])
split = lambda e: json.loads(subprocess.run(["python3", "scripts/footprint.py", e], capture_output=True, text=True, check=True).stdout)
d = split(elf)
parts, sec = d["parts"], d["sections"]

# The engine's size_of: the 4-byte OTAFLEET_ENGINE_SIZE the firmware keeps in .rodata.
nm = subprocess.run(["arm-none-eabi-nm", elf], capture_output=True, text=True, check=True).stdout
addr = next(int(l.split()[0], 16) for l in nm.splitlines() if l.endswith(" OTAFLEET_ENGINE_SIZE"))
engine_ram = None
for line in subprocess.run(["arm-none-eabi-objdump", "-h", elf], capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if len(f) >= 6 and f[1] in (".rodata", ".text"):
        size, vma, off = int(f[2], 16), int(f[3], 16), int(f[5], 16)
        if vma <= addr < vma + size:
            with open(elf, "rb") as fh:
                fh.seek(off + addr - vma)
                engine_ram = int.from_bytes(fh.read(4), "little")

m = re.search(r"engine peak stack: (\d+) bytes", env["QEMU_LOG"])
peak = int(m.group(1)) if m else None
flash_sections = [".vector_table", ".otaf_header", ".text", ".rodata", ".data"]
out = dict(parts)
out.update({
    "goal": parts["engine"] + parts["coap"] + parts["suit"],
    "total_flash": sum(sec.get(s, 0) for s in flash_sections),
    "static_ram": sum(sec.get(s, 0) for s in [".data", ".bss", ".uninit"]),
    "engine_ram": engine_ram,
    "peak_stack": peak,
    "float_symbols": [f["symbol"] for f in d["floats"]],
})
qemu_floats = [f["symbol"] for f in split(qemu_elf)["floats"]] if qemu else []
out["qemu_float_symbols"] = qemu_floats

failures = []
if out["float_symbols"]:
    failures.append(f"the nRF52840 image holds float code: {', '.join(out['float_symbols'])}")
if qemu_floats:
    failures.append(f"the QEMU engine image holds float code: {', '.join(qemu_floats)}")
if out["goal"] > GOAL_CEILING:
    failures.append(f"engine + CoAP + SUIT is {out['goal']} bytes, past the ceiling {GOAL_CEILING}")
if peak is not None and peak > STACK_CEILING:
    failures.append(f"the engine's peak stack is {peak} bytes, past {STACK_CEILING}")
if engine_ram is not None and engine_ram > ENGINE_RAM_CEILING:
    failures.append(f"size_of::<Engine> is {engine_ram} bytes, past {ENGINE_RAM_CEILING}")

if as_json:
    print(json.dumps(out, indent=1))
else:
    labels = [
        ("engine", "engine: lwm2m-client + lwm2m-core (registration, objects, Object 5, content formats, downloads)"),
        ("coap", "CoAP: codec, block options, exchanges, retransmission"),
        ("suit", "SUIT verification: suit-manifest, SHA-256, CBOR, P-256 (Cortex-M4 assembly)"),
        ("download", "out-of-order block window (firmware::window)"),
        ("oscore", "OSCORE"),
        ("delta_applier", "delta applier"),
        ("slots", "A/B slots and persisted record: embassy-boot, sequential-storage, NVMC"),
        ("thread", "Thread (OpenThread)"),
        ("network", "network: embassy-net, smoltcp 6LoWPAN, radio and glue"),
        ("platform", "platform: executor, time, HAL, board glue"),
        ("runtime", "runtime: core/compiler_builtins code that several parts share"),
    ]
    print(f"== nRF52840 firmware {elf} (profile mcu), flash by part (bytes)")
    for key, label in labels:
        print(f"  {out[key]:7d}  {label}")
    print(f"  {sum(parts.values()):7d}  .text + .rodata")
    print(f"  {out['total_flash']:7d}  whole image in flash (vector table, header, .text, .rodata, .data)")
    g = out["goal"]
    print(f"\n== engine + CoAP + Object 5 + SUIT verification: {g} bytes ({g / 1024:.1f} KiB); goal {GOAL_BYTES}: {'met' if g <= GOAL_BYTES else 'NOT met'}; CI ceiling {GOAL_CEILING}")
    print(f"== static RAM (.data + .bss): {out['static_ram']} bytes; size_of::<Engine> {engine_ram} bytes (goal 8192)")
    print(f"== engine peak stack (QEMU, engine-update): {peak if peak is not None else 'not measured (--no-qemu)'} bytes (goal {STACK_CEILING})")
    floats = out["float_symbols"] + qemu_floats
    print(f"== float formatting/parsing/soft-float symbols: {', '.join(floats) if floats else 'none'}")
if check and failures:
    for f in failures:
        print(f"footprint: FAIL {f}", file=sys.stderr)
    sys.exit(1)
EOF
