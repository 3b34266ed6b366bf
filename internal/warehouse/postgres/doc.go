// Package postgres is the Postgres warehouse target: mirrored tables land in
// another Postgres database with the source's own types (see
// docs/type-mapping.md). It is also the stand-in for Redshift in tests,
// since Redshift speaks the Postgres protocol.
//
// It implements the pipeline's Target (State, Reset, Apply), the stream
// reader's ApplyStream and StreamMarks (a stream consumer's target through
// warehouse.StreamTarget), and Checksums and BucketKeys for sluice verify,
// on the shared apply algorithm of package warehouse. Rows are landed with
// COPY (text format) into a typed temporary staging table and merged with
// one generated delete and insert per table, in one transaction with the
// state.
//
// Checksums is also a free function over any pgx connection, because
// sluice verify computes the same checksums on the source table.
package postgres
