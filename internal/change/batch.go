package change

// Batch is a run of changes in source order, the unit every stage hands on.
// A batch may end in the middle of a transaction (memory stays bounded for any
// transaction size); Ack says how far the source may be confirmed once this
// batch and every earlier one is durable downstream.
type Batch struct {
	// Reset lists tables to empty and forget in the target (Target.Reset)
	// before this batch's changes are applied: the source is about to
	// snapshot them again (a change the stream cannot describe, such as a
	// table rewrite or a partition attached). Their rows follow in this or
	// later batches, ending with a Snapshotted marker. A batch with a Reset
	// is never merged into an earlier batch.
	Reset   []*Table
	Changes []Change
	// Snapshotted lists the tables whose initial snapshot is complete once
	// this batch is applied, with the snapshot's position: changes at or
	// before it are already contained in the snapshot.
	Snapshotted []SnapshotDone
	// Ack is the source position that becomes safe to confirm (the end LSN of
	// the last whole transaction in this or an earlier batch), or 0 if this
	// batch moves nothing. A batch may carry only an Ack, with no changes, so
	// the slot moves past WAL that concerns no mirrored table.
	Ack LSN
}

// SnapshotDone marks a table's snapshot as complete at Pos.
type SnapshotDone struct {
	Table *Table
	Pos   Position
}

// Size estimates the memory the batch holds.
func (b *Batch) Size() int {
	n := 0
	for i := range b.Changes {
		n += b.Changes[i].Size()
	}
	return n
}

// TableState is what a target knows of one mirrored table.
type TableState struct {
	// Snapshotted is true once the table's initial snapshot is fully applied.
	Snapshotted bool
	// Applied is the position of the last change applied to the table; any
	// change at or before it is a replay and is skipped.
	Applied Position
}
