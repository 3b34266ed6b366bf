package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// TestToastUnchanged: an UPDATE that leaves a large TOASTed column alone
// reports it as change.Unchanged, not as NULL or a value.
func TestToastUnchanged(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), "CREATE TABLE doc (id int PRIMARY KEY, title text, body text)",
		"ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL", // out of line, uncompressed
		"INSERT INTO doc VALUES (1, 'a', repeat('x', 100000))")
	s := newSource(t, url, nil, "doc")
	_, err := s.Prepare(ctx)
	must(t, err)
	var c collector
	stop := startStream(t, s, c.emit)
	exec(t, url, "UPDATE doc SET title = 'b' WHERE id = 1", "UPDATE doc SET body = repeat('y', 100000) WHERE id = 1", "DELETE FROM doc WHERE id = 1")
	waitFor(t, "3 changes", 20*time.Second, func() bool { return c.count() >= 3 })
	must(t, stop())
	u1, u2, d := c.changes[0], c.changes[1], c.changes[2]
	if u1.Op != change.OpUpdate || u1.After[1].Text != "b" || u1.After[2].Kind != change.KindUnchanged || u1.Before != nil {
		t.Errorf("first update: %v before %v after %v", u1.Op, u1.Before, u1.After)
	}
	if u2.After[2].Text != strings.Repeat("y", 100000) {
		t.Errorf("second update: body not sent")
	}
	if d.Op != change.OpDelete || d.Before[0].Text != "1" || !d.Before[2].IsNull() || d.After != nil {
		t.Errorf("delete: before %v after %v", d.Before, d.After)
	}
	rec := change.AppendRecord(nil, &u1, change.RecordMeta{Pipeline: "p"})
	if !strings.Contains(string(rec), `"unchanged":["body"]`) {
		t.Errorf("record does not name the unchanged column: %s", rec)
	}
}

// TestBigTransaction streams a 200k-row transaction and checks that batches
// stay bounded and that no Ack is given before the transaction is whole.
func TestBigTransaction(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), "CREATE TABLE big (id int PRIMARY KEY, pad text)")
	s := newSource(t, url, func(c *Config) { c.BatchChanges = 5000; c.BatchBytes = 1 << 20 }, "big")
	_, err := s.Prepare(ctx)
	must(t, err)
	var c collector
	stop := startStream(t, s, c.emit)
	exec(t, url, "INSERT INTO big SELECT g, repeat('p', 20) FROM generate_series(1, 200000) g")
	end := currentLSN(t, url)
	waitFor(t, "200k changes and their ack", 60*time.Second, func() bool { return c.count() >= 200000 && c.lastAck() >= end })
	must(t, stop())
	if c.count() != 200000 {
		t.Fatalf("%d changes, want 200000", c.count())
	}
	seen := 0
	for _, b := range c.batches {
		if len(b.Changes) > 5000 || b.Size() > 1<<20+4096 {
			t.Fatalf("batch of %d changes, %d bytes: over the limits", len(b.Changes), b.Size())
		}
		seen += len(b.Changes)
		if b.Ack != 0 && seen < 200000 && b.Ack > c.changes[0].Pos.CommitLSN {
			t.Fatalf("ack %s before the transaction committing at %s was whole (%d changes seen)", b.Ack, c.changes[0].Pos.CommitLSN, seen)
		}
	}
	last := change.Position{}
	for _, ch := range c.changes {
		if ch.Pos.Less(last) || ch.Pos.CommitLSN != c.changes[0].Pos.CommitLSN {
			t.Fatalf("positions out of order or from another transaction: %v after %v", ch.Pos, last)
		}
		last = ch.Pos
	}
	t.Logf("%d batches, largest %d changes", len(c.batches), c.maxLen)
}

// TestSchemaChangeAndTruncate: adding a column yields a new table version
// for the changes after it; a truncate yields one OpTruncate change.
func TestSchemaChangeAndTruncate(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), "CREATE TABLE sc (id int PRIMARY KEY, a text)", "CREATE TABLE other (id int PRIMARY KEY)")
	s := newSource(t, url, nil, "sc", "other")
	tables, err := s.Prepare(ctx)
	must(t, err)
	var c collector
	stop := startStream(t, s, c.emit)
	exec(t, url, "INSERT INTO sc VALUES (1, 'x')", "ALTER TABLE sc ADD COLUMN b numeric(5,1) NOT NULL DEFAULT 1.5",
		"INSERT INTO sc VALUES (2, 'y', 2.5)", "TRUNCATE sc, other")
	waitFor(t, "4 changes", 20*time.Second, func() bool { return c.count() >= 4 })
	must(t, stop())
	i1, i2, t1, t2 := c.changes[0], c.changes[1], c.changes[2], c.changes[3]
	if i1.Table != tables[0] || len(i1.After) != 2 {
		t.Errorf("first insert: table %p version %d, want the prepared schema", i1.Table, i1.Table.Version)
	}
	if i2.Table.Version != 2 || len(i2.Table.Columns) != 3 || i2.Table.Columns[2].Type.Name != "numeric(5,1)" || i2.Table.Columns[2].Nullable || i2.After[2].Text != "2.5" {
		t.Errorf("second insert: version %d columns %+v after %v", i2.Table.Version, i2.Table.Columns, i2.After)
	}
	if t1.Op != change.OpTruncate || t2.Op != change.OpTruncate || t1.Table.Name == t2.Table.Name || t1.Pos.CommitLSN != t2.Pos.CommitLSN {
		t.Errorf("truncate: %v %s, %v %s", t1.Op, t1.Table.ID(), t2.Op, t2.Table.ID())
	}
}

// TestKeylessTables: a table without a primary key is accepted with a
// declared key and REPLICA IDENTITY FULL, and updates carry the old row.
func TestKeylessTables(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), "CREATE TABLE nk (code text NOT NULL, v int)", "ALTER TABLE nk REPLICA IDENTITY FULL",
		"INSERT INTO nk VALUES ('a', 1)")
	s := newSource(t, url, func(c *Config) { c.Keys = map[change.TableID][]string{{Schema: "public", Name: "nk"}: {"code"}} }, "nk")
	tables, err := s.Prepare(ctx)
	must(t, err)
	if got := tables[0].KeyNames(); len(got) != 1 || got[0] != "code" {
		t.Fatalf("key = %v", got)
	}
	var snap, c collector
	must(t, s.Snapshot(ctx, tables, snap.emit))
	stop := startStream(t, s, c.emit)
	exec(t, url, "UPDATE nk SET code = 'b', v = 2", "DELETE FROM nk")
	waitFor(t, "2 changes", 20*time.Second, func() bool { return c.count() >= 2 })
	must(t, stop())
	u, d := c.changes[0], c.changes[1]
	if u.Before == nil || u.Before[0].Text != "a" || u.Before[1].Text != "1" || rowKey(u.OldKey()) != "a" || rowKey(u.Key()) != "b" {
		t.Errorf("update: before %v after %v", u.Before, u.After)
	}
	if rowKey(d.Key()) != "b" || d.Before[1].Text != "2" {
		t.Errorf("delete: before %v", d.Before)
	}

	// Without a declared key: a unique index as replica identity is the
	// key; under REPLICA IDENTITY FULL the whole row is.
	exec(t, url, "CREATE TABLE ri (a int NOT NULL, b int)", "CREATE UNIQUE INDEX ri_a ON ri (a)", "ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_a",
		"CREATE TABLE full_row (a int, b text)", "ALTER TABLE full_row REPLICA IDENTITY FULL")
	more := newSource(t, url, func(c *Config) { c.Pipeline += "_more" }, "ri", "full_row")
	tables, err = more.Prepare(ctx)
	must(t, err)
	if got := strings.Join(tables[0].KeyNames(), ","); got != "a" {
		t.Errorf("replica identity index key = %s", got)
	}
	if !tables[1].Keyless() || tables[1].Columns[0].Key || tables[1].Columns[1].Key {
		t.Errorf("replica identity full without a key: key %v, want keyless", tables[1].KeyNames())
	}

	// A keyless table's changes carry whole rows: a TOASTed value the
	// update left unchanged comes from the old row.
	exec(t, url, "ALTER TABLE full_row ALTER COLUMN b SET STORAGE EXTERNAL",
		"INSERT INTO full_row VALUES (1, repeat('x', 100000)), (1, repeat('x', 100000))")
	var snap2, c2 collector
	must(t, more.Snapshot(ctx, tables, snap2.emit))
	stop2 := startStream(t, more, c2.emit)
	exec(t, url, "UPDATE full_row SET a = 2 WHERE ctid = (SELECT min(ctid) FROM full_row)")
	var up change.Change
	waitFor(t, "keyless update", 20*time.Second, func() bool {
		c2.mu.Lock()
		defer c2.mu.Unlock()
		for _, c := range c2.changes {
			if c.Op == change.OpUpdate {
				up = c
				return true
			}
		}
		return false
	})
	must(t, stop2())
	if up.Op != change.OpUpdate || up.After[1].Kind != change.KindText || len(up.After[1].Text) != 100000 || up.Before[0].Text != "1" || up.After[0].Text != "2" {
		t.Errorf("keyless update: op %v before[0] %v after[0] %v after[1] kind %v len %d", up.Op, up.Before[0], up.After[0], up.After[1].Kind, len(up.After[1].Text))
	}
	if old := up.OldKey(); len(old) != 2 || old[0].Text != "1" {
		t.Errorf("keyless update's old identity: %v", old)
	}

	// A declared key over a nullable column is refused with the fix.
	exec(t, url, "CREATE TABLE nullkey (id int, v text)", "ALTER TABLE nullkey REPLICA IDENTITY FULL")
	bad := newSource(t, url, func(c *Config) {
		c.Pipeline += "_nullkey"
		c.Keys = map[change.TableID][]string{{Schema: "public", Name: "nullkey"}: {"id"}}
	}, "nullkey")
	_, err = bad.Prepare(ctx)
	if err == nil || !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), `ALTER COLUMN "id" SET NOT NULL`) || !strings.Contains(err.Error(), "nullable columns (id)") {
		t.Errorf("declared key over a nullable column: %v", err)
	}
}

// TestIdleAck: WAL of tables that are not mirrored moves the Ack forward
// through empty batches, so the slot does not hold it; the slot itself moves
// only once Confirm is called.
func TestIdleAck(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), "CREATE TABLE m (id int PRIMARY KEY)", "CREATE TABLE unrelated (id int)")
	s := newSource(t, url, nil, "m")
	_, err := s.Prepare(ctx)
	must(t, err)
	before, err := s.Status(ctx)
	must(t, err)
	var c collector
	stop := startStream(t, s, c.emit)
	exec(t, url, "INSERT INTO unrelated SELECT generate_series(1, 1000)")
	end := currentLSN(t, url)
	waitFor(t, "ack past unrelated WAL", 20*time.Second, func() bool { return c.lastAck() >= end })
	// Several status updates later the slot has not moved: nothing was confirmed.
	time.Sleep(4 * s.cfg.StatusInterval)
	mid, err := s.Status(ctx)
	must(t, err)
	if mid.ConfirmedFlush != before.ConfirmedFlush {
		t.Fatalf("slot moved from %s to %s without Confirm", before.ConfirmedFlush, mid.ConfirmedFlush)
	}
	s.Confirm(c.lastAck())
	waitFor(t, "slot to confirm", 20*time.Second, func() bool {
		st, err := s.Status(ctx)
		must(t, err)
		return st.ConfirmedFlush >= end
	})
	st, err := s.Status(ctx)
	must(t, err)
	must(t, stop())
	if c.count() != 0 || st.Slot != s.SlotName() || !st.Active || st.CurrentLSN < st.ConfirmedFlush || st.LagBytes < 0 || st.RetainedBytes < st.LagBytes {
		t.Errorf("changes %d, status %+v", c.count(), st)
	}
}
