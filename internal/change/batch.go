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
	// Marks are the checkpoints of the stream records this batch's changes
	// were read from (a stream reader's batch): the latest per (stream,
	// shard), in the order the shards first appear. The target stores them
	// in the same transaction as the changes, so a batch is applied and
	// marked, or neither. A batch may carry only marks (a shard read to its
	// end, records that were all set aside).
	Marks []StreamMark
	// Ack is the source position that becomes safe to confirm (the end LSN of
	// the last whole transaction in this or an earlier batch), or 0 if this
	// batch moves nothing. A batch may carry only an Ack, with no changes, so
	// the slot moves past WAL that concerns no mirrored table. A source whose
	// batches are not in one LSN order (a stream reader) puts a token of its
	// own here instead, growing with each batch it emits (see
	// pipeline.BatchAcker): what matters downstream is only that a later
	// batch's Ack is larger.
	Ack LSN
}

// StreamMark is a stream reader's checkpoint for one shard, stored in the
// same transaction as the data read up to it: Stream names the stream (or
// the topic), Shard the shard id (or the partition number), Sequence the
// last record applied (a Kinesis sequence number, a Kafka offset).
type StreamMark struct {
	Stream, Shard, Sequence string
	// Below, when set, fences the write: the batch is refused with a
	// warehouse.FenceError unless the stored sequence of the shard is absent
	// or numerically below it (Below is the batch's first record's of that
	// shard). A reader that lost the shard to another (a Kafka group member
	// that missed its session timeout) then cannot apply records the new
	// owner applied, nor move the mark back. Only a source that handles the
	// refusal (pipeline.Fencer) sets it.
	Below string
}

// AddMark puts m among the batch's marks: it replaces the mark of the same
// stream and shard (the later one wins, keeping the earlier one's Below:
// the fence of merged records is their first record's), or is appended.
func (b *Batch) AddMark(m StreamMark) {
	for i := range b.Marks {
		if o := &b.Marks[i]; o.Stream == m.Stream && o.Shard == m.Shard {
			if o.Below != "" {
				m.Below = o.Below
			}
			*o = m
			return
		}
	}
	b.Marks = append(b.Marks, m)
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
