#!/usr/bin/env bash
# Runs every benchmark in this directory; each starts its own throwaway
# servers and prints its figures as ratios against a baseline measured in
# the same run. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
echo "=== source (vs pg_recvlogical)"
./bench/source/run.sh
echo "=== mirror into DuckDB and Postgres, snapshot and streaming (vs COPY TO binary, COPY|COPY, pg_recvlogical), median of 3"
go run ./bench/mirror -runs 3
echo "=== views (the mirror alone vs with an identity-like view and a join view, same WAL)"
go run ./bench/view
echo "=== view state memory (a join view's state over 10M orders, the engine alone; aim < 1 GiB RSS)"
go run ./bench/view -state 10000000 -state-target none
echo "=== Kinesis sink (vs a bare PutRecords loop)"
go run ./bench/kinesis
