// Package quickstart is `sluice quickstart`: a throwaway Postgres
// (internal/testenv) with a customers and an orders table, a live
// workload, a DuckDB mirror with two views run in-process by internal/app,
// its progress line, and a closing verify.
package quickstart
