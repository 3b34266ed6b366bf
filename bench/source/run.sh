#!/usr/bin/env bash
# Benchmarks sluice's Postgres source on a throwaway Postgres started here:
#  1. ~500k changes drained by sluice's source (decode + JSON record encode)
#     and by pg_recvlogical from an identical slot over the same WAL, in the
#     same run: prints both rates and their ratio;
#  2. peak RSS of sluice streaming one 1,000,000-row transaction (< 512 MiB).
# Usage: bench/source/run.sh [changes] [bigtxn-rows]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/sourcebench" ./bench/source
echo "== throughput"
"$out/sourcebench" throughput -n "${1:-500000}"
echo "== one big transaction"
"$out/sourcebench" bigtxn -n "${2:-1000000}"
