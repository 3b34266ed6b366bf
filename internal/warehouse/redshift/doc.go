// Package redshift mirrors tables into Amazon Redshift from a Kinesis
// stream (or a Kafka topic: Amazon MSK, Confluent Cloud, self-managed
// Kafka; kafka.go) of sluice change records, the way the seed tutorial set
// out to but correctly.
//
// NewPlan renders, from a Config, everything that will exist: the IAM
// trust policy and a permission policy scoped to the one stream, the
// external schema FROM KINESIS with the IAM role, the streaming
// materialized view (auto refresh, every record, unparseable ones kept
// unparsed so the merge stops on them: refuse.go), each mirrored
// table's DDL (type mapping in types.go), sluice's bookkeeping tables
// (per-shard or per-partition watermarks, truncation floors, delete markers, what sluice
// created) and each table's incremental merge. Plan.Inspect marks what
// already exists, terraform-style; Setup creates the rest and records it;
// Teardown drops only what Setup recorded.
//
// Merge runs the incremental merge: only view rows after each table's
// per-shard watermark, reduced to the latest change per key by (commit LSN,
// LSN), applied with the new watermarks in one transaction, so re-running
// or replaying changes nothing (merge.go has the steps). A table without a
// key is a multiset, merged as net counts per row value (multiset.go). A
// schema change at the source (ADD/DROP COLUMN) is applied to the mirror by
// the merge that first meets it, over every pending schema (schema.go).
//
// Every Redshift spelling lives in one Dialect; a Postgres Dialect uses a
// landing table with the view's columns and jsonb for SUPER, so tests run
// the very same generated merge against a throwaway Postgres, while the
// Redshift text is pinned by golden files (testdata). Statements reach the
// warehouse through Conn: PgConn (the wire protocol) or DataAPI (the
// Redshift Data API). Plan.VerifySide serves `sluice verify`.
//
// Neighbours: change (the record format it parses in SQL), stream/kinesis
// and stream/kafka (write the records), verify (compares checksums).
package redshift
