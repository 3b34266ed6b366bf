// Package e2e runs the sluice binary end to end against real parts: a
// throwaway Postgres source, DuckDB and Postgres targets, and (for the stream
// tests) a local Kinesis server. It holds the tests that need the whole
// process: random workloads then verify, kill -9 at random moments, bad
// inputs through the CLI, status/verify/query while running.
package e2e
