// Package verify compares a source table with its mirror: per bucket of the
// key space, the row count and an order-independent checksum over every
// column, each computed inside its own database, so no table is pulled into
// memory. Only buckets that differ are looked at row by row, to name the
// first mismatching keys.
//
// To compare while changes keep flowing, the source side is read in the
// exported snapshot of a temporary replication slot (exactly the
// transactions committed before the slot's consistent point) and the
// running pipeline is paused and then moved to that same point (pipeline.Pause, Hold.Move).
package verify
