package e2e

import (
	"strings"
	"testing"
	"time"
)

const readingsSQL = `
CREATE TABLE readings (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE readings_2024 PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE readings_2025 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO readings SELECT g, DATE '2024-01-01' + g % 700, 'r' || g FROM generate_series(1, 5000) g;
CREATE TABLE other (id int PRIMARY KEY, v text);
INSERT INTO other SELECT g, 'o' || g FROM generate_series(1, 100) g;`

// A partitioned table mirrors as one table, its root: rows moving between
// partitions, a partition created later, one attached with rows and one
// detached; verify passes after each, in both targets.
func TestPartitionedTable(t *testing.T) {
	for _, kind := range []string{"duckdb", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			e.exec(readingsSQL)
			const tables = "public.readings,public.other"
			p := e.start(e.args("run", tables)...)
			e.waitVerified(tables, 90*time.Second, p)

			e.exec(`UPDATE readings SET at = at + 366, v = 'moved' WHERE id <= 300 AND at < '2025-01-01';
DELETE FROM readings WHERE id BETWEEN 1000 AND 1100;
INSERT INTO readings VALUES (9000, '2025-02-02', 'new');
INSERT INTO other VALUES (1000, 'meanwhile');`)
			e.waitVerified(tables, 60*time.Second, p)

			e.exec(`CREATE TABLE readings_2026 PARTITION OF readings FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO readings SELECT g, DATE '2026-01-01' + g % 300, 'in 2026' FROM generate_series(10000, 10500) g;`)
			e.waitVerified(tables, 60*time.Second, p)
			if strings.Contains(p.out.String(), "re-snapshotting") {
				t.Errorf("a partition created empty re-snapshotted the table:\n%s", p.out.String())
			}

			e.exec(`CREATE TABLE loose (LIKE readings INCLUDING ALL);
INSERT INTO loose SELECT g, DATE '2027-01-01' + g % 300, 'attached' FROM generate_series(20000, 21000) g;
ALTER TABLE readings ATTACH PARTITION loose FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');`)
			e.waitVerified(tables, 60*time.Second, p)
			e.exec(`ALTER TABLE readings DETACH PARTITION readings_2024; UPDATE readings SET v = 'after detach' WHERE id = 9000`)
			e.waitVerified(tables, 60*time.Second, p)
			log := p.out.String()
			if !strings.Contains(log, "partition public.loose was attached with rows") || !strings.Contains(log, "partition public.readings_2024 was detached") {
				t.Errorf("attach and detach are not logged:\n%s", log)
			}
			if strings.Contains(log, "table public.other:") {
				t.Errorf("other was re-snapshotted:\n%s", log)
			}
			p.stop(t)
		})
	}
}

// A single partition named alone is mirrored as a plain table.
func TestSinglePartition(t *testing.T) {
	e := newEnv(t, "duckdb")
	e.exec(readingsSQL)
	p := e.start(e.args("run", "public.readings_2025")...)
	e.waitVerified("public.readings_2025", 60*time.Second, p)
	e.exec(`INSERT INTO readings VALUES (9001, '2025-03-03', 'through the root'), (9002, '2024-03-03', 'other partition');
UPDATE readings_2025 SET v = 'direct' WHERE id = 400`)
	e.waitVerified("public.readings_2025", 60*time.Second, p)
	p.stop(t)
}
