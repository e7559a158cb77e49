#!/usr/bin/env python3
"""Splits the flash of an ARM firmware ELF into parts (called by scripts/footprint.sh, which says
how to build the ELF and what the figures mean).

How a byte is attributed to a part, in this order:

1. Code (.text), instruction by instruction, by its source: the ELF's DWARF line table gives for
   each instruction the chain of functions it was inlined through (`addr2line -i`), innermost
   first. The first function of the chain that matches a part's patterns owns the instruction.
   So `heapless::Vec::push` inlined into `lwm2m_client::...` counts for the engine, and an engine
   function inlined into the board's async task counts for the engine too, not for the task.
2. Code without a matching function (core, compiler_builtins, outlined fragments, C and assembly
   without debug info) is matched by the symbol it lies in, then, if that fails, by its callers:
   a function that only one part calls (directly, `bl`/`b`) belongs to that part, repeated until
   nothing changes. What several parts call, or what is only called through pointers (fmt
   vtables, interrupt vectors), stays in `runtime`.
3. Constants (.rodata) by their symbol's name; unnamed ones (`.Lanon.*`) are `runtime`.
4. Padding between symbols is `runtime`, so the parts add up to .text + .rodata exactly.

Output: one JSON object on stdout, {"parts": {name: bytes}, "sections": {...}, "floats": [...]}.
"""

import bisect
import json
import re
import subprocess
import sys

# Parts, in priority order: (name, pattern of a function or symbol name). A pattern matches at
# the start of the name, after any leading `<` (so `<T as Trait>::f` goes by `T`). Another issue
# adds its part here; an empty part reports 0.
PARTS = [
    ("coap", r"lwm2m_core::(coap|block)::|lwm2m_client::(exchange|rto)::"),
    ("oscore", r"(lwm2m_client::oscore|lwm2m_core::oscore|liboscore|oscore|lakers)"),
    ("delta_applier", r"(lwm2m_client::(firmware::)?delta|delta_patch|detools|heatshrink|bspatch)"),
    ("download", r"lwm2m_client::firmware::window::"),
    ("engine", r"(lwm2m_client|lwm2m_core)::"),
    (
        "suit",
        r"(suit_manifest|cbor_read|sha2|digest|block_buffer|crypto_common|minicbor|p256|P256_|p256_"
        r"|mod_inv_vartime|slide_257|hash_to_z|mul288x288|one_montgomery)",
    ),
    (
        "slots",
        r"(embassy_boot|sequential_storage|embassy_embedded_hal|embedded_storage"
        r"|embassy_nrf::nvmc)",
    ),
    ("thread", None),  # boards/nrf52840/thread-symbols.txt, read below
    (
        "network",
        r"(embassy_net|smoltcp|embassy_net_driver_channel|embassy_net_driver"
        r"|embassy_nrf::radio|nrf52840::radio)",
    ),
    (
        "platform",
        r"(nrf52840::|embassy_executor|embassy_time|embassy_sync|embassy_nrf|embassy_futures"
        r"|embassy_hal_internal|nrf_pac|cortex_m|critical_section|static_cell|qemu_mps2|__cortex_m_rt)",
    ),
]
RUNTIME = "runtime"

# Float formatting and parsing (core::fmt for f32/f64, flt2dec, dec2flt) and the soft-float
# helpers of double precision (the Cortex-M4F has a single-precision FPU only).
FLOAT = re.compile(
    r"(flt2dec|dec2flt|float_to_decimal|float_to_exponential|core::fmt::float|core::num::bignum"
    r"|core::num::diy_float|<f(32|64) as core::fmt|__aeabi_d[a-z0-9]*|__aeabi_[fi]2d|__aeabi_[ul]*2d"
    r"|__aeabi_d2[a-z]*|__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|unord|fix|fixuns|float|floatun"
    r"|extend|trunc|pow)[a-z]*df[0-9]*|compiler_builtins::float::)"
)


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def part_of(name):
    n = name.lstrip("<")
    for part, rx in COMPILED:
        if rx.match(n):
            return part
    return None


def thread_patterns():
    """The Thread stack's patterns, one per line in boards/nrf52840/thread-symbols.txt (OpenThread's
    C++ `ot::`, its C API, mbedTLS, the Rust crate), joined into one."""
    path = __file__.rsplit("/", 2)[0] + "/boards/nrf52840/thread-symbols.txt"
    try:
        with open(path) as fh:
            lines = [l.strip() for l in fh if l.strip() and not l.startswith("#")]
    except OSError:
        lines = [r"^openthread", r"^ot[A-Z]", r"^ot::", r"^mbedtls_"]
    return "|".join(f"(?:{l})" for l in lines)


PARTS = [(p, rx if rx is not None else thread_patterns()) for p, rx in PARTS]
COMPILED = [(p, re.compile(rx)) for p, rx in PARTS]


def main(elf):
    # Sections.
    sections = {}
    for line in run("arm-none-eabi-size", "-A", elf).splitlines():
        f = line.split()
        if len(f) == 3 and f[0].startswith(".") and f[1].isdigit():
            sections[f[0]] = int(f[1])

    # Sized symbols: (addr, size, kind, name).
    symbols = []
    for line in run("arm-none-eabi-nm", "-S", "-C", elf).splitlines():
        f = line.split(None, 3)
        if len(f) == 4:
            symbols.append((int(f[0], 16) & ~1, int(f[1], 16), f[2], f[3].strip()))
    code = sorted((s for s in symbols if s[2] in "tT"), key=lambda s: s[0])
    starts = [s[0] for s in code]

    def symbol_at(addr):
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < code[i][0] + code[i][1]:
            return i
        return None

    # Instructions: address and length, from the disassembly; calls between symbols.
    insns = []  # (addr, length)
    calls = []  # (call site address, callee start address)
    call = re.compile(
        r"^(?:bl|blx|b|b(?:eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le))(?:\.w|\.n)?"
        r"\s+([0-9a-f]+)\s+<"
    )
    for addr, raw, text in disassemble(elf):
        insns.append((addr, raw))
        m = call.search(text)
        if m:
            calls.append((addr, int(m.group(1), 16)))

    # 1. Instruction by instruction, by the inline chain of its source.
    owner = {}
    why = {}  # address -> the function or symbol that decided its part (for --detail)
    chains = addr2line(elf, [a for a, _ in insns])
    for addr, _ in insns:
        for fn in chains.get(addr, []):
            p = part_of(fn)
            if p:
                owner[addr] = p
                why[addr] = fn
                break

    # 2. By symbol, then by callers, for what the chain left open.
    sym_of_insn = {}
    for addr, _ in insns:
        i = symbol_at(addr)
        if i is not None:
            sym_of_insn[addr] = i
            if addr not in owner:
                p = part_of(code[i][3])
                if p:
                    owner[addr] = p
                    why[addr] = code[i][3]
    sym_part = {}
    for i, s in enumerate(code):
        parts = {owner.get(a) for a, _ in insns_in(insns, s[0], s[0] + s[1])}
        sym_part[i] = parts.pop() if len(parts) == 1 else None
    changed = True
    while changed:
        changed = False
        callers = {}
        for site, target in calls:
            i = symbol_at(target)
            if i is None or code[i][0] != target:
                continue
            callers.setdefault(i, set()).add(owner.get(site))
        for i, who in callers.items():
            if sym_part.get(i) is None and len(who) == 1 and None not in who:
                p = next(iter(who))
                sym_part[i] = p
                for a, _ in insns_in(insns, code[i][0], code[i][0] + code[i][1]):
                    if a not in owner:
                        owner[a] = p
                        why[a] = "called only by " + p + ": " + code[i][3]
                changed = True

    parts = {p: 0 for p, _ in PARTS}
    parts[RUNTIME] = 0
    detail = {}
    counted = 0
    for addr, length in insns:
        p = owner.get(addr, RUNTIME)
        parts[p] += length
        counted += length
        i = sym_of_insn.get(addr)
        key = (p, why.get(addr) or (code[i][3] if i is not None else "?"))
        detail[key] = detail.get(key, 0) + length
    # 3. Constants by name.
    for addr, size, kind, name in symbols:
        if kind in "rR":
            p = part_of(name) or RUNTIME
            parts[p] += size
            counted += size
            detail[(p, name)] = detail.get((p, name), 0) + size
    # 4. Padding and anything not covered.
    flash_code = sections.get(".text", 0) + sections.get(".rodata", 0)
    parts[RUNTIME] += max(0, flash_code - counted)

    floats = sorted(
        ((size, name) for _, size, kind, name in symbols if kind in "tTrR" and FLOAT.search(name)),
        reverse=True,
    )
    if "--detail" in sys.argv:
        for (p, name), n in sorted(detail.items(), key=lambda kv: -kv[1]):
            print(f"{p:10} {n:7d} {name[:200]}", file=sys.stderr)
    json.dump(
        {
            "parts": parts,
            "sections": sections,
            "floats": [{"symbol": n, "bytes": s} for s, n in floats],
        },
        sys.stdout,
    )


def insns_in(insns, lo, hi):
    i = bisect.bisect_left(insns, (lo, 0))
    while i < len(insns) and insns[i][0] < hi:
        yield insns[i]
        i += 1


def disassemble(elf):
    """(address, length in bytes, text) of every instruction or literal word in .text."""
    out = []
    line_rx = re.compile(r"^\s+([0-9a-f]+):\t([0-9a-f ]+?)\s*\t(.*)$")
    for line in run("arm-none-eabi-objdump", "-d", "-j", ".text", elf).splitlines():
        m = line_rx.match(line)
        if m:
            raw = m.group(2).replace(" ", "")
            out.append((int(m.group(1), 16), len(raw) // 2, m.group(3)))
    return out


def addr2line(elf, addrs):
    """Address -> the names of the functions it was inlined through, innermost first."""
    text = "\n".join(f"{a:x}" for a in addrs) + "\n"
    res = subprocess.run(
        ["arm-none-eabi-addr2line", "-i", "-f", "-C", "-a", "-e", elf],
        input=text, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    chains, cur = {}, None
    i = 0
    while i < len(res):
        line = res[i]
        if line.startswith("0x"):
            cur = int(line, 16)
            chains[cur] = []
            i += 1
            continue
        # Pairs: function name, then file:line.
        if cur is not None and line not in ("??",):
            chains[cur].append(line)
        i += 2
    return chains


if __name__ == "__main__":
    main(sys.argv[1])
