package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/sluice-dev/sluice/internal/change"
)

// The producer's state file: what the producer has put on the stream for
// each table. Neither Kinesis nor Kafka can hold it. Positions are written
// in the LSN form Postgres prints so a person can read the file.
//
//	{"version":1,"stream":"orders","partitions":6,"tables":[
//	  {"schema":"public","table":"orders","snapshotted":true,"applied":"0/16B3748:0/16B3790"}]}
type stateFile struct {
	Version int    `json:"version"`
	Stream  string `json:"stream"`
	// Partitions is the partition count a Kafka producer spreads keys over,
	// pinned at its first record: partitions added to the topic later do
	// not move keys (which would break their order). 0: not pinned.
	Partitions int          `json:"partitions,omitempty"`
	Tables     []stateTable `json:"tables"`
}

// producerState is what the state file holds, in memory.
type producerState struct {
	tables     map[change.TableID]change.TableState
	partitions int
}

type stateTable struct {
	Schema      string `json:"schema"`
	Table       string `json:"table"`
	Snapshotted bool   `json:"snapshotted"`
	Applied     string `json:"applied"` // commit LSN:change LSN
}

func loadState(path, streamName string) (producerState, error) {
	out := map[change.TableID]change.TableState{}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return producerState{tables: out}, nil
	}
	if err != nil {
		return producerState{}, fmt.Errorf("read sink state file: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return producerState{}, fmt.Errorf("sink state file %s is damaged (%v): delete it to snapshot every table again", path, err)
	}
	if f.Stream != "" && f.Stream != streamName {
		return producerState{}, fmt.Errorf("sink state file %s belongs to stream %q, not %q: give each stream its own state file", path, f.Stream, streamName)
	}
	for _, t := range f.Tables {
		var pos change.Position
		if t.Applied != "" {
			c, l, ok := cutPosition(t.Applied)
			if !ok {
				return producerState{}, fmt.Errorf("sink state file %s: table %s.%s has position %q, want COMMIT_LSN:LSN: delete the file to snapshot every table again", path, t.Schema, t.Table, t.Applied)
			}
			if pos.CommitLSN, err = change.ParseLSN(c); err == nil {
				pos.LSN, err = change.ParseLSN(l)
			}
			if err != nil {
				return producerState{}, fmt.Errorf("sink state file %s: table %s.%s: %w", path, t.Schema, t.Table, err)
			}
		}
		out[change.TableID{Schema: t.Schema, Name: t.Table}] = change.TableState{Snapshotted: t.Snapshotted, Applied: pos}
	}
	return producerState{tables: out, partitions: f.Partitions}, nil
}

func cutPosition(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

func saveState(path, streamName string, ps producerState) error {
	f := stateFile{Version: 1, Stream: streamName, Partitions: ps.partitions, Tables: make([]stateTable, 0, len(ps.tables))}
	for id, s := range ps.tables {
		f.Tables = append(f.Tables, stateTable{Schema: id.Schema, Table: id.Name, Snapshotted: s.Snapshotted, Applied: s.Applied.String()})
	}
	sort.Slice(f.Tables, func(i, j int) bool {
		if f.Tables[i].Schema != f.Tables[j].Schema {
			return f.Tables[i].Schema < f.Tables[j].Schema
		}
		return f.Tables[i].Table < f.Tables[j].Table
	})
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(path, append(data, '\n')); err != nil {
		return fmt.Errorf("write sink state file %s: %w", path, err)
	}
	return nil
}
