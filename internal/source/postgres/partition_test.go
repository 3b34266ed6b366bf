package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

const readingsSetup = `CREATE TABLE readings (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE readings_2024 PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE readings_2025 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO readings SELECT g, DATE '2024-01-01' + g, 'r' || g FROM generate_series(1, 600) g;
CREATE TABLE other (id int PRIMARY KEY, v text);
INSERT INTO other VALUES (1, 'one');`

// TestPartitionedRoot: a partitioned table is mirrored as its root through
// snapshot and stream, with rows moving between partitions, a partition
// created later (no re-snapshot), one attached with rows, one detached and
// one truncated (each a re-snapshot of the root alone); another table
// streams meanwhile.
func TestPartitionedRoot(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), readingsSetup)
	var logs logBuffer
	s := newSource(t, url, func(c *Config) { c.ChunkRows = 50; c.SnapshotWorkers = 3; c.Logger = logs.logger() }, "readings", "other")
	tables, err := s.Prepare(ctx)
	must(t, err)
	if got := strings.Join(tables[0].KeyNames(), ","); got != "id,at" {
		t.Fatalf("key of readings = %s", got)
	}
	var viaRoot bool
	must(t, s.conn(t).QueryRow(ctx, "SELECT pubviaroot FROM pg_publication WHERE pubname = $1", s.PublicationName()).Scan(&viaRoot))
	if !viaRoot {
		t.Fatal("publication does not publish through the partition root")
	}
	m := newMemTarget()
	runPipeline(t, s, m, tables)
	root := change.TableID{Schema: "public", Name: "readings"}
	waitMirrored(t, m, url, "readings", "id", "at")
	if n := m.resetCount(root); n != 1 {
		t.Fatalf("%d resets of readings after the first snapshot, want 1", n)
	}

	// Rows move between partitions, and plain changes.
	exec(t, url, "UPDATE readings SET at = at + 366, v = 'moved' WHERE id <= 50",
		"DELETE FROM readings WHERE id BETWEEN 100 AND 120", "INSERT INTO readings VALUES (1000, '2025-03-01', 'new')",
		"UPDATE readings SET v = 'same partition' WHERE id BETWEEN 200 AND 210")
	waitMirrored(t, m, url, "readings", "id", "at")

	// A partition created later needs no re-snapshot: its rows stream
	// through the root.
	exec(t, url, "CREATE TABLE readings_2026 PARTITION OF readings FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
		"INSERT INTO readings SELECT g, DATE '2026-01-01' + g % 300, 'in 2026' FROM generate_series(2000, 2100) g",
		"INSERT INTO other VALUES (2, 'two')",
		`BEGIN; CREATE TABLE readings_2030 PARTITION OF readings FOR VALUES FROM ('2030-01-01') TO ('2031-01-01');
		INSERT INTO readings VALUES (2200, '2030-02-02', 'same transaction'); COMMIT`)
	waitMirrored(t, m, url, "readings", "id", "at")
	waitMirrored(t, m, url, "other", "id")
	if n := m.resetCount(root); n != 1 {
		t.Fatalf("a partition created empty re-snapshotted readings (%d resets)", n)
	}

	// A table attached with rows: its rows reach the mirror.
	exec(t, url, `BEGIN; CREATE TABLE loose (LIKE readings INCLUDING ALL);
		INSERT INTO loose SELECT g, DATE '2027-01-01' + g % 300, 'attached' FROM generate_series(3000, 3200) g;
		ALTER TABLE readings ATTACH PARTITION loose FOR VALUES FROM ('2027-01-01') TO ('2028-01-01'); COMMIT`)
	waitMirrored(t, m, url, "readings", "id", "at")
	if n := m.resetCount(root); n != 2 {
		t.Errorf("attach: %d resets, want 2", n)
	}
	if !strings.Contains(logs.String(), "partition public.loose was attached with rows") {
		t.Errorf("the attach is not logged:\n%s", logs.String())
	}

	// Detached: its rows leave the mirror. Truncated alone: likewise.
	exec(t, url, "ALTER TABLE readings DETACH PARTITION readings_2024", "INSERT INTO other VALUES (3, 'three')")
	waitMirrored(t, m, url, "readings", "id", "at")
	exec(t, url, "TRUNCATE readings_2026")
	waitMirrored(t, m, url, "readings", "id", "at")
	exec(t, url, "UPDATE readings SET v = 'after' WHERE id = 1000", "INSERT INTO other VALUES (4, 'four')")
	waitMirrored(t, m, url, "readings", "id", "at")
	waitMirrored(t, m, url, "other", "id")
	if n := m.resetCount(root); n < 4 {
		t.Errorf("detach and truncate: %d resets, want at least 4", n)
	}
	if n := m.resetCount(change.TableID{Schema: "public", Name: "other"}); n != 1 {
		t.Errorf("other was re-snapshotted (%d resets): only readings should be", n)
	}
}

// TestPartitionRefusals: a partition listed beside its root is refused; a
// partition alone is a plain table; a publication sluice did not create
// must publish through the root, and one sluice created is switched to it.
func TestPartitionRefusals(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), readingsSetup)

	both := newSource(t, url, nil, "readings", "readings_2025")
	_, err := both.Prepare(ctx)
	if err == nil || !strings.Contains(err.Error(), "readings_2025 is a partition of public.readings, which is mirrored too") {
		t.Errorf("root and partition together: %v", err)
	}

	alone := newSource(t, url, func(c *Config) { c.Pipeline += "_alone" }, "readings_2025")
	tables, err := alone.Prepare(ctx)
	must(t, err)
	m := newMemTarget()
	runPipeline(t, alone, m, tables)
	exec(t, url, "INSERT INTO readings VALUES (5000, '2025-05-05', 'via root'), (5001, '2024-05-05', 'other partition')",
		"UPDATE readings_2025 SET v = 'direct' WHERE id = 400")
	waitMirrored(t, m, url, "readings_2025", "id", "at")

	exec(t, url, "CREATE PUBLICATION mine FOR TABLE readings")
	foreign := newSource(t, url, func(c *Config) { c.Pipeline += "_foreign"; c.Publication = "mine" }, "readings")
	_, err = foreign.Prepare(ctx)
	if err == nil || !errors.Is(err, ErrForeignObjects) || !strings.Contains(err.Error(), "ALTER PUBLICATION \"mine\" SET (publish_via_partition_root = true)") {
		t.Errorf("foreign publication without publish_via_partition_root: %v", err)
	}

	// A publication sluice created before it published through the root.
	old := newSource(t, url, func(c *Config) { c.Pipeline += "_old" }, "other")
	_, err = old.Prepare(ctx)
	must(t, err)
	exec(t, url, "ALTER PUBLICATION "+change.QuoteIdent(old.PublicationName())+" SET (publish_via_partition_root = false)")
	exec(t, url, "INSERT INTO readings VALUES (6000, '2025-06-06', 'before the switch')")
	grown := newSource(t, url, func(c *Config) { c.Pipeline = old.cfg.Pipeline }, "other", "readings")
	tables, err = grown.Prepare(ctx)
	must(t, err)
	// The slot was created before the switch: changes decoded after it
	// arrive as the root's.
	m = newMemTarget()
	runPipeline(t, grown, m, tables)
	exec(t, url, "INSERT INTO readings VALUES (6001, '2024-06-06', 'after the switch')", "UPDATE readings SET v = 'moved' WHERE id = 6000")
	waitMirrored(t, m, url, "readings", "id", "at")
	var viaRoot bool
	must(t, grown.conn(t).QueryRow(ctx, "SELECT pubviaroot FROM pg_publication WHERE pubname = $1", grown.PublicationName()).Scan(&viaRoot))
	if !viaRoot {
		t.Error("sluice's own publication was not switched to publish through the root")
	}
}
