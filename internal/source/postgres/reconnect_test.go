package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// TestReconnect: when the server ends the replication connection, Stream
// reconnects by itself and resumes from the slot's confirmed position.
func TestReconnect(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), "CREATE TABLE r (id int PRIMARY KEY)")
	s := newSource(t, url, nil, "r")
	_, err := s.Prepare(ctx)
	must(t, err)
	var c collector
	stop := startStream(t, s, func(ctx context.Context, b *change.Batch) error {
		if b.Ack != 0 {
			s.Confirm(b.Ack)
		}
		return c.emit(ctx, b)
	})
	exec(t, url, "INSERT INTO r VALUES (1)")
	waitFor(t, "first insert", 20*time.Second, func() bool { return c.count() >= 1 })
	for i := 0; i < 2; i++ {
		waitFor(t, "slot active", 20*time.Second, func() bool { st, err := s.Status(ctx); return err == nil && st.Active })
		exec(t, url, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '"+s.SlotName()+"'")
	}
	exec(t, url, "INSERT INTO r VALUES (2)")
	waitFor(t, "insert after reconnecting", 30*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, ch := range c.changes {
			if ch.After[0].Text == "2" {
				return true
			}
		}
		return false
	})
	must(t, stop())
}

// TestAddTable: a table added to a running mirror is put in the publication
// by Prepare and snapshotted alone; the stream then carries its changes.
func TestAddTable(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), "CREATE TABLE a (id int PRIMARY KEY)", "CREATE TABLE b (id int PRIMARY KEY, v text)",
		"INSERT INTO b VALUES (1, 'before')")
	s := newSource(t, url, nil, "a")
	_, err := s.Prepare(ctx)
	must(t, err)

	s2 := newSource(t, url, nil, "a", "b")
	tables, err := s2.Prepare(ctx)
	must(t, err)
	var c collector
	stop := startStream(t, s2, c.emit)
	var snap collector
	must(t, s2.Snapshot(ctx, tables[1:], snap.emit))
	exec(t, url, "INSERT INTO b VALUES (2, 'after')")
	waitFor(t, "streamed insert into b", 20*time.Second, func() bool { return c.count() >= 1 })
	must(t, stop())
	if len(snap.changes) != 1 || snap.changes[0].After[1].Text != "before" || snap.changes[0].Table.Name != "b" {
		t.Errorf("snapshot of b: %v", snap.changes)
	}
	if c.changes[0].Table.Name != "b" || c.changes[0].After[1].Text != "after" {
		t.Errorf("stream: %v", c.changes[0])
	}
}
