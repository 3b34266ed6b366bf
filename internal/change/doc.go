// Package change defines the one currency that flows between sluice's stages:
// a Change (one row-level event from the source), its Position in the source's
// history, the Table schema it belongs to, typed Values, and the JSON change
// record that carries a Change over a stream.
//
// The source (source/postgres) produces Changes; the pipeline batches them;
// streams (stream/kinesis) encode them with Encode and decode them with Decode;
// warehouses (warehouse/...) reduce them by Position and merge them.
//
// Ordering rule used everywhere downstream: a later Position (commit LSN, then
// change LSN) wins, never arrival time. That makes every stage safe against
// duplicates and reordering.
package change
