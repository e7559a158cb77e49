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

# Debian packages: real CoAP peers (libcoap), the Cortex-M4 emulator, size tools for the MCU,
# valgrind (the benchmark counts instructions with callgrind), and Chromium with Node for the
# dashboard's browser test (Debian's build: playwright-core drives it, no browser download).
missing=()
command -v coap-client-notls >/dev/null 2>&1 || missing+=(libcoap3-bin)
command -v qemu-system-arm >/dev/null 2>&1 || missing+=(qemu-system-arm)
command -v arm-none-eabi-size >/dev/null 2>&1 || missing+=(binutils-arm-none-eabi)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

# Python peers and cross-checkers (aiocoap; cbor2 + cryptography as an independent SUIT verifier),
# in a venv under the ignored target/ folder.
venv=target/venv
if ! "$venv/bin/python" -c 'import aiocoap, cbor2, cryptography' >/dev/null 2>&1; then
  echo "setup: creating $venv with aiocoap, cbor2, cryptography"
  mkdir -p target
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check aiocoap cbor2 cryptography
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
