// Package duckdb is the embedded DuckDB warehouse target: a local
// analytical copy of the mirrored tables that can be queried at once.
//
// It implements the pipeline's Target (State, Reset, Apply), the stream
// reader's ApplyStream and StreamMarks (a stream consumer's target through
// warehouse.StreamTarget), and Checksums and BucketKeys for sluice
// verify, all on the shared apply algorithm of package warehouse. Rows are
// landed with DuckDB's Appender into an all-VARCHAR staging table
// and merged with one generated delete and insert per table, in one
// transaction with the state. DuckDB allows one writing process: other
// commands reach a running sluice through DB (read-only queries from the
// admin endpoint).
//
// Tables land in the schema named by Options.Schema, by default the source
// table's own schema name (public stays public), so that two source schemas
// with the same table name cannot collide. sluice's state lives in the
// schema _sluice.
package duckdb
