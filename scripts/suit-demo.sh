#!/usr/bin/env bash
# A SUIT release round trip with the `suit` CLI: makes a signing key, signs a firmware image,
# verifies it, shows it, and proves that a tampered image and a foreign key are refused.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build -q --release -p suit-manifest --bin suit
suit=$PWD/target/release/suit
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

head -c 262144 /dev/urandom > fw.bin
"$suit" keygen -o key.pem
"$suit" create --image fw.bin --vendor-id acme.example --class-id sensor-rev-b --sequence 7 \
  --uri image --version 1.1.0 --key key.pem -o fw.suit
"$suit" verify --key key.pub.pem fw.suit --image fw.bin
"$suit" show fw.suit --key key.pub.pem

printf '\xff' | dd of=fw.bin bs=1 seek=1000 conv=notrunc 2>/dev/null
if "$suit" verify --key key.pub.pem fw.suit --image fw.bin; then echo "FAIL: a tampered image verified"; exit 1; fi
"$suit" keygen -o other.pem >/dev/null
if "$suit" verify --key other.pub.pem fw.suit; then echo "FAIL: a foreign key verified"; exit 1; fi
echo "demo ok: signed release created and verified; tampered image and foreign key refused"
