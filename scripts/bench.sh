#!/usr/bin/env bash
# The benchmarks (see docs/BENCHMARKS.md): builds the bench and the server binary, runs every
# table (or `--only transfer,registry,device,fleet`), writes bench-results/*.json and docs/BENCHMARKS.md.
# `scripts/bench.sh --smoke` is the seconds-long version CI runs (output under target/bench-smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build -q --release -p otafleet-bench -p lwm2m-server -p lwm2m-client -p sim-network
target/release/otafleet-bench "$@"
