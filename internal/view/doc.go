// Package view maintains SQL views over the mirrored tables incrementally:
// each view is one SELECT in DuckDB's dialect, named in config, whose
// output is a change stream with a key that lands in every target as a
// table. It sits between the source and the targets as the pipeline's
// transform: Apply takes the source's batches and returns the views'
// output changes; Confirm is told what the target holds durably.
//
// # Views
//
// A view is a Spec: the output table's name, an optional declared key and
// one SELECT. Supported: a FROM clause that is a chain of tables joined
// INNER or LEFT (ON conditions of any form; CROSS joins and comma joins),
// WHERE, GROUP BY with any deterministic aggregate (count, sum, min, max,
// avg, ...), HAVING, DISTINCT, and any deterministic expression. Refused at
// start-up, with the line and column and the offending name: unknown
// tables and columns, subqueries, UNION/INTERSECT/EXCEPT, WITH, ORDER BY,
// LIMIT, window functions, RIGHT/FULL/SEMI/ANTI joins, USING/NATURAL joins,
// parenthesized joins, `*` (list the columns, so a column added to an
// input does not change the view), aggregates together with DISTINCT, and
// volatile functions: everything DuckDB marks volatile or "consistent
// within a query" (now(), current_timestamp, current_date, random(),
// uuid(), nextval(), ...), since a view's output must be a function of its
// input rows alone. Order-sensitive aggregates (string_agg, list, first)
// must order their input themselves (string_agg(x, ',' ORDER BY x)).
//
// Open compiles every view and returns all errors at once (errors.Join of
// *SQLError). A view with no table named "schema.name" reads schema public.
//
// # Output key
//
// Every output row has a key; at most one row per key. The key is declared
// (Spec.Key, output column names) or derived:
//   - GROUP BY: the GROUP BY columns, each of which must be an output column;
//   - DISTINCT: all output columns;
//   - otherwise the keys of the input tables whose rows make an output row:
//     the first table of FROM and every joined table that is not joined
//     to-one (a table is joined to-one when its ON condition equates its
//     whole key with expressions of the tables before it), each key column
//     selected as a plain column.
//
// A view whose key cannot be derived and is not declared is refused at
// start-up with the reason. A declared key is checked at runtime: a
// transaction that makes two output rows share it stops the view with an
// error naming the view and the key value (and a dead letter). Key values
// may be NULL (a LEFT JOIN's missing partner, a NULL group): NULL keys
// compare equal to each other.
//
// Keyless input tables (a change.Table without key) are multisets: equal
// rows are separate rows, a delete removes exactly one equal row (NULLs
// compare equal), an update is the delete of its old row and the insert of
// its new one. Views read them when the key is derived from GROUP BY or
// DISTINCT, or declared; a plain projection of a keyless table is refused.
//
// # Semantics of the output
//
// The unit of work is whole source transactions. The complete
// transactions one batch delivers one after another are evaluated as one
// group: their output is one atomic set of changes with at most one change
// per output key, the net effect of the group, emitted when its last
// transaction is complete (a change of a later commit LSN arrived, or
// Batch.Ack reached its commit LSN); nothing of half a transaction is ever
// emitted or stored. This is exactly the output of evaluating each
// transaction alone and netting the outputs of the group per key (the
// engine already nets any number of changes of one key within one
// transaction; a group is evaluated as one transaction holding the
// group's changes in order), so a target committing once per batch holds
// after each batch what it would hold with per-transaction evaluation:
// only states of a view between two transactions of one batch, which no
// target commit shows, are not emitted. A replayed transaction, and the
// transaction a batch leaves open, are evaluated alone.
//
// Output changes are op c (insert), u (update, with Before) and d (delete,
// with Before), each carrying the full row, in key order per view. Each
// carries the position (commit LSN of the group's last transaction, n)
// with n = 1, 2, ... over the group's outputs, so "a later (commit LSN,
// LSN) position wins" holds downstream, and a replay yields the same
// positions.
//
//   - Filters retract: a row leaving the WHERE (or HAVING) becomes a delete,
//     one entering becomes an insert.
//   - A change of an output row's key is a delete of the old key and an
//     insert of the new one.
//   - A row moving to another join partner, or whose partner changes, is
//     an update; a LEFT JOIN row whose partner appears or goes is an update
//     too (the partner's columns become non-NULL or NULL).
//   - Aggregates stay exact under deletes: a touched group is recomputed in
//     full (a deleted max finds the next one).
//   - An update whose TOASTed column was not sent (change.KindUnchanged)
//     keeps the stored value of that column.
//
// # Snapshots
//
// Snapshot rows (op r) of an input fill its stored table. Once every input
// of a view has its snapshot (Batch.Snapshotted), Apply returns the view's
// whole output as op r rows at position (P, 0), P the latest of the
// inputs' snapshot positions, and a SnapshotDone for the view's table.
// Streamed changes of an input at or before its snapshot position are
// skipped (they are in the snapshot). Snapshot rows arriving for an input
// that has a snapshot start a re-snapshot: its stored rows are dropped and
// the views reading it emit their whole output again (op r rows, deletes
// of keys that vanished, a SnapshotDone). A whole output is returned in
// pages of at most 50,000 rows: the first with the Apply that computed
// it, the rest from NextPage while Pending (the pipeline's Pager), the
// SnapshotDone with the last; Apply takes no source batch meanwhile, so
// no later change of the view reaches a target before its snapshot rows.
//
// A view new to the state file, or whose SQL or key changed, is rebuilt:
// its whole output is emitted again as a snapshot at the next Apply once
// its inputs are snapshotted (Rebuilding lists them; the target should
// reset their tables). Resnapshot forces the same for one view.
//
// # State and exactly-once
//
// Everything lives in one DuckDB state file: the current rows of every
// input (with a hidden row number, _sluice_rid), each view's materialized
// output, a lineage table for grouped views, the position reached, the
// output log and the dead letters. A transaction's input rows are written
// to the state file as they arrive, inside a DuckDB transaction that stays
// open until the source transaction is complete (memory stays bounded by
// the batch, whatever the transaction's size); the views' evaluation, the
// output log and the position reached commit together, once per Apply.
// Kill the process at any moment: the open DuckDB transaction is rolled
// back and the source re-sends that transaction from its confirmed
// position.
//
// The state may commit before the target does. So the outputs of each
// transaction are kept in the output log with their positions; when Apply
// is handed a transaction at or before the position reached (a replay after
// a crash), it emits the logged outputs again instead of recomputing.
// Confirm(lsn) tells the engine the target durably holds every output up to
// the transaction committed at lsn; the log before it is pruned at the next
// Apply. Replayed outputs of a confirmed transaction are not emitted (the
// target has them).
//
// # Evaluation
//
// Key-scoped recomputation. For each transaction the engine finds the rows
// of the first table of FROM whose output the transaction may change: the
// first table's own changed rows, and for every other changed table the
// first-table rows that its old or new rows join (the join chain up to
// that table over the current state, that table replaced by its changed
// rows and joined INNER: a new partner of a LEFT JOIN touches only the rows
// it matches). Then:
//   - for views whose output key contains the first table's key (no
//     aggregate, no DISTINCT), the output rows of those first-table rows
//     are recomputed and compared with the stored output;
//   - for the others, a lineage table maps each first-table row to the
//     output keys its join rows fall in (after WHERE, before aggregation
//     and HAVING); the keys of the touched rows, before (from the lineage)
//     and after (recomputed), are recomputed in full and compared.
//
// The difference is the output. Each step is one SQL statement DuckDB runs
// over the state file; the view's own SQL is run unchanged except for the
// restriction to the touched keys.
//
// # Schema changes of inputs
//
// A column added to an input is added to its stored table (existing rows
// take the column's missing value) and does not disturb any view. A column
// dropped or retyped is dropped with the source when no view reads it;
// when a view reads it, that view stops with an error naming the column
// (see Errors), at runtime or at start-up. A retyped column's stored
// values are gone: the input is snapshotted again at the next start.
// Column types are DuckDB's types for the source type, as the DuckDB
// warehouse maps them (intervals are kept as their Postgres text).
//
// # Errors
//
// Start-up errors are *SQLError (view, line, column, message). A runtime
// failure of a view — a cast failing on one row, a declared key found not
// unique, a column it reads dropped or retyped — stops that view alone: the
// reason (a *RuntimeError naming the view, the causing transaction's
// position, the input keys it touched and DuckDB's message) is recorded
// with the view and in the state file's table _sluice.dead_letters (view,
// input table, input key, position, message, time), Stopped reports it,
// and the mirror and the other views go on. A stopped view emits nothing;
// its stored output stays as of the transaction before the failure, and
// its inputs are kept up. It stays stopped across restarts until its
// definition changes (TRY_CAST, a better key), which rebuilds it. A view
// that ran before with the same definition and no longer compiles over
// its inputs (a column dropped while sluice was not running) is stopped at
// Open instead of refusing the start. Nothing is skipped silently.
//
// DuckDB aborts its whole transaction on an error and has no savepoints:
// Apply records the view as stopped, opens the state file again as of its
// last commit and applies again, without the view, the batches since that
// commit (kept while the transaction they leave open is, up to 200,000
// changes) and the failing one. Past that bound the transaction's earlier
// part is lost with the abort: Apply returns a *RestartError (the
// Transform makes it the pipeline's Fatal) so that the source sends it
// again.
//
// # Verify
//
// Evaluate runs a view's SQL in full over given input rows in a scratch
// database, for `sluice verify` (the view's SQL over the source snapshot,
// compared with the view's target table).
package view
