#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian machine with Rust stable; idempotent, and
# quick (a few checks) when everything is already there. Called by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  [ $apt_updated -eq 1 ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Debian packages: real CoAP peers (libcoap), the Cortex-M4 emulator, binutils and a C compiler
# for the MCU (size tools, GNU as, the P-256 assembly), valgrind (the benchmark counts
# instructions with callgrind), and Chromium with Node for the dashboard's browser test (Debian's
# build: playwright-core drives it, no browser download).
missing=()
command -v coap-client-notls >/dev/null 2>&1 || missing+=(libcoap3-bin)
command -v qemu-system-arm >/dev/null 2>&1 || missing+=(qemu-system-arm)
command -v arm-none-eabi-size >/dev/null 2>&1 || missing+=(binutils-arm-none-eabi)
# A C compiler for the MCU: suit-manifest builds its P-256 assembly verifier with it (build.rs).
command -v arm-none-eabi-gcc >/dev/null 2>&1 || command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
# OpenThread's C/C++ sources, built by openthread-sys for the simulator's nodes (sim-thread, host)
# and for the board (boards/nrf52840 feature `thread`, thumbv7em-none-eabihf: Debian's clang
# targets ARM as it is): CMake + Ninja + clang, and libclang for the bindings.
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
command -v clang >/dev/null 2>&1 || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || missing+=(libclang-dev)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# PostgreSQL for the PostgreSQL store's tests: each starts a throw-away cluster of its own
# (initdb + pg_ctl, as the package's `postgres` user when run as root), so the package's own
# cluster and service are not used. Debian keeps the binaries in /usr/lib/postgresql/*/bin.
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

# Python peers and cross-checkers (aiocoap with its OSCORE extra; cbor2 + cryptography as an
# independent SUIT verifier; detools, the delta patch format's reference), in a venv under the
# ignored target/ folder. aiocoap without its OSCORE modules would fetch in plain text, so the
# check imports them.
venv=target/venv
if ! "$venv/bin/python" -c 'import aiocoap, aiocoap.oscore, filelock, lakers, cbor2, cryptography, detools' >/dev/null 2>&1; then
  echo "setup: creating $venv with aiocoap[oscore], cbor2, cryptography, detools"
  mkdir -p target
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check 'aiocoap[oscore]' cbor2 cryptography detools
fi

# The MCU target for the no_std crates and the QEMU firmware.
if ! rustup target list --installed | grep -qx thumbv7em-none-eabihf; then
  echo "setup: adding the thumbv7em-none-eabihf Rust target"
  rustup target add thumbv7em-none-eabihf
fi

# playwright-core for the browser test, exactly as locked, in tests/browser/node_modules (ignored).
# Again only when the lock changed since the last install.
browser=tests/browser
if [ ! -f $browser/node_modules/playwright-core/package.json ] \
   || [ $browser/package-lock.json -nt $browser/node_modules/.package-lock.json ]; then
  echo "setup: npm ci in $browser (playwright-core)"
  npm ci --prefix $browser --no-audit --no-fund --loglevel=error
fi
