// Package postgres is sluice's change source: it reads a Postgres database
// through a publication and a logical replication slot (pgoutput, text
// format) and turns what it reads into change.Batches.
//
// Prepare checks the server and the tables (wal_level, free slots and WAL
// senders, the REPLICATION attribute, SELECT privilege, a key for every
// table), then creates or reuses the publication and the slot, recording in
// the publication's comment what sluice created so that Teardown removes
// exactly that. Snapshot copies tables consistently with the slot: a
// temporary slot exports a snapshot that parallel workers import, each
// streaming COPY chunks (ctid page ranges) in text format row by row. Stream
// decodes pgoutput from the main slot, cuts batches bounded in count and
// bytes (a batch may end inside a transaction), and moves the slot only as far
// as Confirm allows.
//
// A partitioned table is read through its root (partition.go). Changes that
// send no row changes, such as a table rewritten by a volatile default or a
// type change and a partition attached or detached, are found in the
// catalog (catalog.go), while streaming and at start-up, and re-snapshot
// just that table: a batch with Reset, its rows, then streaming resumes
// from the slot (resnapshot.go).
//
// Values from COPY and from pgoutput are both Postgres' text form, so one
// decoder (types.go) keyed on the column's type turns them into
// change.Values. Its neighbours: change (the currency it produces) and
// pipeline (which calls Snapshot, Stream and Confirm).
package postgres
