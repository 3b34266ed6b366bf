package stream

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// ProducerConfig configures a Producer. Transport, Stream and MaxRecordBytes
// are required; a transport's sink fills them in.
type ProducerConfig struct {
	// Transport names the stream kind in messages: "Kinesis", "Kafka".
	Transport string
	// Stream is the stream's or topic's name, written into the state file
	// (a state file of another stream is refused) and the dead letters.
	Stream string
	// Pipeline and Database go into every record's source.name and source.db.
	Pipeline string
	Database string
	// StateFile holds the per-table state. Each stream needs its own.
	StateFile string
	// DeadLetterFile, when set, receives records over MaxRecordBytes or
	// refused by Refuse (one JSON line each: table, key, position, size,
	// reason, record) instead of stopping the pipeline.
	DeadLetterFile string
	// DeadLetterKey is the configuration key that sets DeadLetterFile, named
	// in the errors' fix (e.g. stream.kafka.dead_letter_file).
	DeadLetterKey string
	// MaxRecordBytes is the transport's limit on one record, counted as the
	// record data plus the partition key.
	MaxRecordBytes int
	// Refuse, when set, is asked about every encoded record; a non-empty
	// answer (the reason) refuses it like a record over the size limit.
	Refuse func(c *change.Change, record []byte) string
	Logger *slog.Logger
	// Now stamps records' ts_ms; default time.Now.
	Now func() time.Time
}

// Producer is the stream-agnostic half of a sink: it turns batches into
// records and keeps the state file. A transport calls Prepare, SetAside,
// sends the plan's segments in order, then Commit. Prepare calls must not
// overlap: their order is the stream's order.
type Producer struct {
	cfg  ProducerConfig
	log  *slog.Logger
	dead *JSONLFile

	mu    sync.Mutex // guards state and resets
	state producerState
	// resets are the tables Reset since their last snapshot row was put:
	// their next snapshot row is preceded by a truncate at the snapshot's
	// position, so consumers drop what an earlier, unfinished snapshot or
	// stream left of the table (rows deleted since would otherwise stay).
	resets map[change.TableID]bool

	buf          []byte // record encoding buffer, reused between Prepares
	deadLettered atomic.Int64
}

// NewProducer loads the state file and opens the dead-letter file.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StateFile == "" {
		return nil, fmt.Errorf("no state file for the %s producer of %s", cfg.Transport, cfg.Stream)
	}
	if cfg.MaxRecordBytes <= 0 {
		return nil, fmt.Errorf("no record size limit for the %s producer of %s", cfg.Transport, cfg.Stream)
	}
	p := &Producer{cfg: cfg, log: cfg.Logger, resets: map[change.TableID]bool{}}
	if dir := filepath.Dir(cfg.StateFile); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create directory of sink state file: %w", err)
		}
	}
	var err error
	if p.state, err = loadState(cfg.StateFile, cfg.Stream); err != nil {
		return nil, err
	}
	if cfg.DeadLetterFile != "" {
		if p.dead, err = OpenJSONL(cfg.DeadLetterFile); err != nil {
			return nil, fmt.Errorf("open dead-letter file: %w", err)
		}
	}
	return p, nil
}

// Close releases the dead-letter file.
func (p *Producer) Close() error { return p.dead.Close() }

// StateFile is the path of the state file.
func (p *Producer) StateFile() string { return p.cfg.StateFile }

// State reports what the state file says about each table.
func (p *Producer) State(context.Context) (map[change.TableID]change.TableState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.state.tables), nil
}

// Reset forgets a table's state before its (re)snapshot. The stream cannot
// be emptied: the snapshot's op=r records that follow upsert every current
// row after a reset marker, and a consumer reduces by position as always.
func (p *Producer) Reset(_ context.Context, t *change.Table) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.state.tables, t.ID())
	p.resets[t.ID()] = true
	return saveState(p.cfg.StateFile, p.cfg.Stream, p.state)
}

// Partitions is the partition count pinned in the state file (0: none yet).
func (p *Producer) Partitions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.partitions
}

// PinPartitions records the partition count keys are spread over, before
// the first record is sent with it.
func (p *Producer) PinPartitions(n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state.partitions = n
	return saveState(p.cfg.StateFile, p.cfg.Stream, p.state)
}

// DeadLettered counts the records set aside since start.
func (p *Producer) DeadLettered() int64 { return p.deadLettered.Load() }

// Record is one encoded record. Data and Key stay valid until the next
// Prepare.
type Record struct {
	Data []byte
	Key  string // the partition key
}

// Size is what counts against a transport's record limit.
func (r Record) Size() int { return len(r.Data) + len(r.Key) }

// Segment is a run of records to put on the stream. Records of one key must
// reach the stream in their order; records of different keys may be sent
// concurrently. An Everywhere segment holds one record, a truncate, that
// goes to every partition (shard): consumers read partitions independently,
// and each must see the truncate before the records after it. Segments are
// barriers: a segment is sent after every record of the one before it was
// accepted.
type Segment struct {
	Records    []Record
	Everywhere bool
}

// Plan is what one batch puts on the stream.
type Plan struct {
	Segments []Segment
	// Records is the number of records in Segments (an Everywhere record
	// counted once).
	Records int

	state  map[change.TableID]change.TableState
	resets map[change.TableID]bool
	dead   []deadLetter
}

// RecordTooLargeError is returned for a record over the transport's limit
// when no dead-letter file is configured. The pipeline stops without moving
// the slot.
type RecordTooLargeError struct {
	Table change.TableID
	Key   string // the key values in record form
	Pos   change.Position
	Size  int // record data plus partition key, in bytes
	Limit int
	// Transport and DeadLetterKey name the stream kind and the key that
	// sets a dead-letter file, for the message.
	Transport, DeadLetterKey string
}

func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("change record for table %s key %s at %s is %d bytes, over the %s limit of %d bytes per record: "+
		"exclude or shorten the large column in the pipeline's SQL, or set a dead-letter file (%s) to set such records aside and go on",
		e.Table, e.Key, e.Pos, e.Size, e.Transport, e.Limit, e.DeadLetterKey)
}

// RecordRefusedError is returned for a record ProducerConfig.Refuse refused
// when no dead-letter file is configured. The pipeline stops without moving
// the slot.
type RecordRefusedError struct {
	Table         change.TableID
	Key           string
	Pos           change.Position
	Reason        string
	DeadLetterKey string
}

func (e *RecordRefusedError) Error() string {
	return fmt.Sprintf("change record for table %s key %s at %s is refused: %s: "+
		"exclude or shorten the column in the pipeline's SQL, or set a dead-letter file (%s) to set such records aside and go on",
		e.Table, e.Key, e.Pos, e.Reason, e.DeadLetterKey)
}

// deadLetter is one line of the dead-letter file.
type deadLetter struct {
	Table    string    `json:"table"`
	Key      string    `json:"key"`
	Position string    `json:"position"`
	Size     int       `json:"size"`
	Stream   string    `json:"stream"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
	Record   jsonRaw   `json:"record"`
}

// jsonRaw embeds a change record as JSON (it is valid JSON by construction).
type jsonRaw []byte

func (j jsonRaw) MarshalJSON() ([]byte, error) { return j, nil }

// Prepare encodes a batch into a plan, skipping changes already on the
// stream by the state file (a replayed batch). It does no I/O.
func (p *Producer) Prepare(b *change.Batch) (*Plan, error) {
	now := p.cfg.Now()
	meta := change.RecordMeta{Pipeline: p.cfg.Pipeline, Database: p.cfg.Database, Emitted: now}

	p.mu.Lock()
	state := maps.Clone(p.state.tables)
	if state == nil {
		state = map[change.TableID]change.TableState{}
	}
	resets := maps.Clone(p.resets)
	p.mu.Unlock()

	// Encode into one buffer first and slice it after: appends may move it.
	buf := p.buf[:0]
	type pending struct {
		off, end int
		pk       string
		trunc    bool
	}
	var recs []pending
	plan := &Plan{state: state, resets: resets}
	var pkBuf []byte
	for i := range b.Changes {
		c := &b.Changes[i]
		id := c.Table.ID()
		st := state[id]
		if c.Op == change.OpRead {
			if st.Snapshotted {
				continue // a replayed snapshot row of a finished snapshot
			}
		} else if !st.Applied.IsZero() && !st.Applied.Less(c.Pos) {
			continue // already on the stream
		}
		parts := [3]*change.Change{c}
		if del, ins, ok := SplitKeyChange(c); ok {
			parts = [3]*change.Change{del, ins}
		}
		if c.Op == change.OpRead && resets[id] {
			marker := &change.Change{Op: change.OpTruncate, Table: c.Table, Pos: c.Pos, TxID: c.TxID, CommitTime: c.CommitTime}
			parts = [3]*change.Change{marker, c}
			delete(resets, id)
		}
		for _, c := range parts {
			if c == nil {
				break
			}
			off := len(buf)
			buf = change.AppendRecord(buf, c, meta)
			pkBuf = AppendPartitionKey(pkBuf[:0], c)
			pk := string(pkBuf)
			size := len(buf) - off + len(pk)
			refused := ""
			if size <= p.cfg.MaxRecordBytes && p.cfg.Refuse != nil {
				refused = p.cfg.Refuse(c, buf[off:])
			}
			if size > p.cfg.MaxRecordBytes || refused != "" {
				keyText := KeyString(c)
				if p.dead == nil {
					p.buf = buf[:0]
					if refused != "" {
						return nil, &RecordRefusedError{Table: id, Key: keyText, Pos: c.Pos, Reason: refused, DeadLetterKey: p.cfg.DeadLetterKey}
					}
					return nil, &RecordTooLargeError{Table: id, Key: keyText, Pos: c.Pos, Size: size, Limit: p.cfg.MaxRecordBytes,
						Transport: p.cfg.Transport, DeadLetterKey: p.cfg.DeadLetterKey}
				}
				reason := refused
				if reason == "" {
					reason = fmt.Sprintf("over the %s limit of %d bytes per record", p.cfg.Transport, p.cfg.MaxRecordBytes)
				}
				plan.dead = append(plan.dead, deadLetter{Table: id.String(), Key: keyText, Position: c.Pos.String(), Size: size,
					Record: jsonRaw(append([]byte(nil), buf[off:]...)), Time: now.UTC(), Stream: p.cfg.Stream, Reason: reason})
				buf = buf[:off]
				continue
			}
			recs = append(recs, pending{off, len(buf), pk, c.Op == change.OpTruncate})
		}
		if c.Op != change.OpRead && st.Applied.Less(c.Pos) {
			st.Applied = c.Pos
		}
		state[id] = st
	}
	p.buf = buf
	for _, sd := range b.Snapshotted {
		st := state[sd.Table.ID()]
		st.Snapshotted = true
		if st.Applied.Less(sd.Pos) {
			st.Applied = sd.Pos
		}
		state[sd.Table.ID()] = st
	}
	var cur []Record
	for _, r := range recs {
		rec := Record{Data: buf[r.off:r.end:r.end], Key: r.pk}
		if !r.trunc {
			cur = append(cur, rec)
			continue
		}
		if len(cur) > 0 {
			plan.Segments = append(plan.Segments, Segment{Records: cur})
			cur = nil
		}
		plan.Segments = append(plan.Segments, Segment{Records: []Record{rec}, Everywhere: true})
	}
	if len(cur) > 0 {
		plan.Segments = append(plan.Segments, Segment{Records: cur})
	}
	plan.Records = len(recs)
	return plan, nil
}

// SetAside writes the plan's dead letters to disk. It must succeed before
// the plan's records are sent: once they are accepted and the slot moves,
// the dead letters are the only copy.
func (p *Producer) SetAside(plan *Plan) error {
	if len(plan.dead) == 0 {
		return nil
	}
	lines := make([]any, len(plan.dead))
	for i := range plan.dead {
		lines[i] = plan.dead[i]
		p.log.Warn("change record set aside in the dead-letter file",
			"table", plan.dead[i].Table, "key", plan.dead[i].Key, "position", plan.dead[i].Position, "bytes", plan.dead[i].Size,
			"reason", plan.dead[i].Reason, "file", p.cfg.DeadLetterFile)
	}
	if err := p.dead.Append(lines...); err != nil {
		return fmt.Errorf("set aside records over the size limit: %w", err)
	}
	p.deadLettered.Add(int64(len(plan.dead)))
	plan.dead = nil // a retried send does not set them aside twice
	return nil
}

// Commit records the tables' new state in the state file, once the
// transport reported every record of the plan accepted.
func (p *Producer) Commit(plan *Plan) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state.tables = plan.state
	p.resets = plan.resets
	return saveState(p.cfg.StateFile, p.cfg.Stream, p.state)
}

// SplitKeyChange turns an update that changed the row's key into a delete
// of the old key and an insert of the new one (as Debezium does). Each then
// travels with its own key's records, on its key's partition, in its key's
// order; one update record under the new key alone could overtake the old
// key's earlier records, or be overtaken by its later ones (a new row that
// reuses the old key), on another partition.
//
// An update that left a TOASTed column unchanged stays whole: only the
// update tells a consumer to take that value from the old key's row.
func SplitKeyChange(c *change.Change) (del, ins *change.Change, ok bool) {
	if c.OldKey() == nil {
		return nil, nil, false
	}
	for _, v := range c.After {
		if v.Kind == change.KindUnchanged {
			return nil, nil, false
		}
	}
	d, i := *c, *c
	d.Op, d.After = change.OpDelete, nil
	i.Op, i.Before = change.OpInsert, nil
	return &d, &i, true
}

// KeyString is a change's key values in record form, for messages: [1,"a"].
func KeyString(c *change.Change) string {
	var b []byte
	b = append(b, '[')
	for i, v := range c.Key() {
		if i > 0 {
			b = append(b, ',')
		}
		b = change.AppendValueJSON(b, v)
	}
	return string(append(b, ']'))
}
