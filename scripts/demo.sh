#!/usr/bin/env bash
# The main job: a vendor key, a signed SUIT release, lwm2m-server on its embedded store, and 50
# simulated devices on a lossy 3-hop Thread mesh updated to the release in virtual time. Exits 0
# only if every device runs the new image. Extra arguments go to `sim-network demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run -q --release -p sim-network -- demo "$@"
