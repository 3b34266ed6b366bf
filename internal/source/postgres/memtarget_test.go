package postgres

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// memTarget is a target in memory that applies batches the way a warehouse
// does in replication mode: Reset empties a table and forgets its state,
// snapshot rows count until the table's snapshot is done, a change at or
// before a table's applied position is a replay. Rows are kept by column
// name, so a schema change needs nothing; a column a row lacks takes the
// newest schema's fast default.
type memTarget struct {
	mu     sync.Mutex
	rows   map[change.TableID]map[string]map[string]string
	state  map[change.TableID]change.TableState
	latest map[change.TableID]*change.Table
	resets map[change.TableID]int
}

var _ pipeline.Target = (*memTarget)(nil)

func newMemTarget() *memTarget {
	return &memTarget{rows: map[change.TableID]map[string]map[string]string{}, state: map[change.TableID]change.TableState{},
		latest: map[change.TableID]*change.Table{}, resets: map[change.TableID]int{}}
}

func (m *memTarget) State(context.Context) (map[change.TableID]change.TableState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[change.TableID]change.TableState{}
	for k, v := range m.state {
		out[k] = v
	}
	return out, nil
}

func (m *memTarget) Reset(_ context.Context, t *change.Table) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[t.ID()] = map[string]map[string]string{}
	m.state[t.ID()] = change.TableState{}
	m.latest[t.ID()] = t
	m.resets[t.ID()]++
	return nil
}

func (m *memTarget) Apply(_ context.Context, b *change.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range b.Changes {
		c := &b.Changes[i]
		id := c.Table.ID()
		st := m.state[id]
		if c.Op == change.OpRead && st.Snapshotted || c.Op != change.OpRead && !st.Applied.Less(c.Pos) {
			continue
		}
		rows := m.rows[id]
		if rows == nil {
			rows = map[string]map[string]string{}
			m.rows[id] = rows
		}
		m.latest[id] = c.Table
		switch c.Op {
		case change.OpTruncate:
			clear(rows)
		case change.OpDelete:
			delete(rows, rowKey(c.Key()))
		default:
			var prev map[string]string
			if old := c.OldKey(); old != nil {
				prev = rows[rowKey(old)]
				delete(rows, rowKey(old))
			} else {
				prev = rows[rowKey(c.Key())]
			}
			row := map[string]string{}
			for j, col := range c.Table.Columns {
				v := c.After[j]
				if v.Kind == change.KindUnchanged {
					row[col.Name] = prev[col.Name]
					continue
				}
				row[col.Name] = v.String()
			}
			rows[rowKey(c.Key())] = row
		}
		if st.Applied.Less(c.Pos) {
			st.Applied = c.Pos
		}
		m.state[id] = st
	}
	for _, sd := range b.Snapshotted {
		st := m.state[sd.Table.ID()]
		st.Snapshotted = true
		if st.Applied.Less(sd.Pos) {
			st.Applied = sd.Pos
		}
		m.state[sd.Table.ID()] = st
	}
	return nil
}

// contents renders a table's rows in the newest schema's column order.
func (m *memTarget) contents(id change.TableID) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.latest[id]
	out := map[string]string{}
	if t == nil {
		return out
	}
	for k, row := range m.rows[id] {
		parts := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			v, ok := row[c.Name]
			switch {
			case ok:
			case c.Missing != nil:
				v = c.Missing.String()
			default:
				v = "NULL"
			}
			parts[i] = v
		}
		out[k] = strings.Join(parts, "|")
	}
	return out
}

func (m *memTarget) resetCount(id change.TableID) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.resets[id]
}

// sourceContents renders a source table like memTarget.contents: key
// columns joined by "|" to the row's columns joined by "|", in the same text
// forms as the decoder's (the session parameters of the source).
func sourceContents(t *testing.T, url, table string, key ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url+"&TimeZone=UTC&DateStyle=ISO&extra_float_digits=3")
	must(t, err)
	defer conn.Close(ctx)
	cols, err := pgx.CollectRows(must2(conn.Query(ctx, `SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, table)), pgx.RowTo[string])
	must(t, err)
	render := func(names []string) string {
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = "coalesce(" + change.QuoteIdent(n) + "::text, 'NULL')"
		}
		return "concat_ws('|', " + strings.Join(parts, ", ") + ")"
	}
	rows, err := conn.Query(ctx, "SELECT "+render(key)+", "+render(cols)+" FROM "+table)
	must(t, err)
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		must(t, rows.Scan(&k, &v))
		out[k] = v
	}
	must(t, rows.Err())
	return out
}

func must2[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// mirrorsSource reports whether the target holds exactly the source table,
// and a few differences if not.
func mirrorsSource(t *testing.T, m *memTarget, url, table string, key ...string) (bool, string) {
	id, err := change.ParseTableID(table)
	must(t, err)
	got, want := m.contents(id), sourceContents(t, url, table, key...)
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			diffs = append(diffs, fmt.Sprintf("key %s: target %q, source %q", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("key %s: target %q, source has none", k, g))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("... %d in all (target %d rows, source %d)", len(diffs), len(got), len(want)))
	}
	return len(diffs) == 0, strings.Join(diffs, "\n")
}

// waitMirrored waits until the target holds exactly the source table.
func waitMirrored(t *testing.T, m *memTarget, url, table string, key ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, why := mirrorsSource(t, m, url, table, key...)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not mirrored:\n%s", table, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runPipeline runs the real pipeline from s into m until the test ends or
// the returned stop is called.
func runPipeline(t *testing.T, s *Source, m *memTarget, tables []*change.Table) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := pipeline.New(s, m, pipeline.Options{Logger: testLogger(t)})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, tables) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("pipeline: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// logBuffer captures a source's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// conn opens a connection to the source's database for the test.
func (s *Source) conn(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), s.cfg.URL)
	must(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
