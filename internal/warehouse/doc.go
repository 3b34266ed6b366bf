// Package warehouse holds what every warehouse target shares: reducing a
// batch to the latest change per key (plan.go), the type families and the
// small Dialect seam (dialect.go, types.go), the generated SQL for DDL, the
// staged merge, the state table and checksums (sqlgen.go), and the one
// transaction body that applies a batch through any dialect (apply.go).
//
// The dialect packages (warehouse/duckdb, warehouse/postgres, later
// warehouse/redshift) supply a Dialect, open the transaction, bulk-load the
// staging table their own way (DuckDB Appender, Postgres COPY) and commit.
//
// Apply order inside one transaction, per table: create or ALTER the target
// to the batch's schema, run a truncate if the batch holds one, land the
// reduced rows in a staging table, resolve unchanged TOAST values from the
// target, delete every staged key from the target, insert the staged rows
// that are not deletes, then move the table's state. A replay finds its
// changes at or before the stored position and drops them, so it changes
// nothing.
//
// Keys known to be new skip the delete: keys whose first change in the
// batch is an insert, snapshot reads into a table emptied by Reset, and
// every key after a truncate. A segment of only such keys is loaded
// straight into the target when the session can (DirectLoader: COPY into
// the table in Postgres, typed Appender rows in DuckDB). Should such a key
// exist after all (a redelivered batch), the duplicate key fails the
// transaction and the target retries the batch with every key merged in
// full (ApplyOptions.NoShortcut).
package warehouse
