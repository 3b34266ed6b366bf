package warehouse

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// StreamMark is a stream reader's checkpoint for one shard, stored in the
// same transaction as the data read up to it (see change.StreamMark).
type StreamMark = change.StreamMark

// FenceError is a batch refused because another reader stored a mark of
// the shard at or past the batch's first record (see StreamMark.Below):
// the batch's records of that shard were applied by it. Nothing of the
// batch was applied. It is a pipeline.ErrFenced: the pipeline hands the
// batch back to its source (pipeline.Fencer) instead of retrying it.
type FenceError struct {
	Stream, Shard string
	Stored        string // the mark the target holds
	Below         string // the batch's first record
}

func (e *FenceError) Error() string {
	return fmt.Sprintf("shard %s of stream %s: the target's mark %s is at or past this batch's first record %s: another reader applied it (the shard moved to it); nothing was applied",
		e.Shard, e.Stream, e.Stored, e.Below)
}

// Is makes a FenceError a pipeline.ErrFenced.
func (e *FenceError) Is(target error) bool { return target == pipeline.ErrFenced }

// SeqLess compares two decimal sequence numbers (Kinesis sequence numbers
// and Kafka offsets, as text, of any length).
func SeqLess(a, b string) bool {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// Bucket is one slice of a table's key space as Checksums reports it.
type Bucket struct {
	ID   int
	Rows int64
	Sum  string // decimal text of the sum of the rows' hashes
}

// RowHash is one row as BucketKeys reports it: its key (each key column in
// its canonical text form, see the canonical forms in sqlgen.go) and the hash
// of the whole row. The same row hashes the same on source and target.
type RowHash struct {
	Key  []string
	Hash string // md5 of the canonical row text, hex
}

// StateRow is what the state table holds for one source table.
type StateRow struct {
	ID    change.TableID
	State change.TableState
	// Shape is the schema the target table was last created or altered to,
	// or nil when it is not known (a table created by an older version or by
	// hand): then columns are compared by name only.
	Shape *change.Table
}

// shapeColumn is the stored form of one column of a table's shape.
type shapeColumn struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Kind     string `json:"kind"`
	Elem     string `json:"elem,omitempty"`
	Base     string `json:"base,omitempty"`
	Nullable bool   `json:"nullable,omitempty"`
	Key      bool   `json:"key,omitempty"`
	Num      int    `json:"num,omitempty"`
}

// EncodeShape is the JSON form of a table's columns kept in the state table.
func EncodeShape(t *change.Table) string {
	cols := make([]shapeColumn, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = shapeColumn{Name: c.Name, Type: c.Type.Name, Kind: c.Type.Kind.String(), Base: c.Type.Base, Nullable: c.Nullable, Key: c.Key, Num: c.Num}
		if c.Type.Kind == change.KindArray {
			cols[i].Elem = c.Type.Elem.String()
		}
	}
	b, _ := json.Marshal(storedShape{Columns: cols, Key: t.KeyNames()})
	return string(b)
}

type storedShape struct {
	Columns []shapeColumn `json:"columns"`
	Key     []string      `json:"key"`
}

// DecodeShape is the inverse of EncodeShape.
func DecodeShape(id change.TableID, s string) (*change.Table, error) {
	var st storedShape
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return nil, fmt.Errorf("decode stored shape of %s: %w", id, err)
	}
	t := &change.Table{Schema: id.Schema, Name: id.Name}
	for _, c := range st.Columns {
		k, err := change.ParseKind(c.Kind)
		if err != nil {
			return nil, fmt.Errorf("decode stored shape of %s: %w", id, err)
		}
		col := change.Column{Name: c.Name, Type: change.Type{Name: c.Type, Kind: k, Base: c.Base}, Nullable: c.Nullable, Key: c.Key, Num: c.Num}
		if c.Elem != "" {
			if col.Type.Elem, err = change.ParseKind(c.Elem); err != nil {
				return nil, fmt.Errorf("decode stored shape of %s: %w", id, err)
			}
		}
		t.Columns = append(t.Columns, col)
	}
	for _, name := range st.Key {
		if i := t.Column(name); i >= 0 {
			t.Key = append(t.Key, i)
		}
	}
	return t, nil
}
