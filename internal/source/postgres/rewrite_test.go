package postgres

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

const rewriteSetup = `CREATE TABLE t (id int PRIMARY KEY, n int, s text);
INSERT INTO t SELECT g, g, 's' || g FROM generate_series(1, 500) g;
CREATE TABLE other (id int PRIMARY KEY, v text);
INSERT INTO other VALUES (1, 'one');`

// TestRewrites: each change whose new values never appear as row changes is
// detected and re-snapshots the table alone, whether a row change follows
// it (the relation message) or not (the catalog check); a fast default stays
// an ALTER; the other table keeps streaming.
func TestRewrites(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), rewriteSetup, "CREATE EXTENSION IF NOT EXISTS pgcrypto")
	var logs logBuffer
	s := newSource(t, url, func(c *Config) { c.Logger = logs.logger() }, "t", "other")
	tables, err := s.Prepare(ctx)
	must(t, err)
	m := newMemTarget()
	runPipeline(t, s, m, tables)
	tid := change.TableID{Schema: "public", Name: "t"}
	waitMirrored(t, m, url, "t", "id")
	resets := 1
	n := 0
	step := func(name string, resnapshot bool, want string, sqls ...string) {
		t.Helper()
		n++
		exec(t, url, sqls...)
		exec(t, url, "INSERT INTO other VALUES ("+strconv.Itoa(100+n)+", '"+name+"')")
		waitMirrored(t, m, url, "t", "id")
		waitMirrored(t, m, url, "other", "id")
		if resnapshot {
			resets++
		}
		if got := m.resetCount(tid); got != resets {
			t.Errorf("%s: %d resets of t, want %d", name, got, resets)
			resets = got
		}
		if want != "" && !strings.Contains(logs.String(), want) {
			t.Errorf("%s: the log does not say %q:\n%s", name, want, logs.String())
		}
	}
	step("type change, no row change after it", true, "table public.t: column n changed type integer -> bigint; re-snapshotting it",
		"ALTER TABLE t ALTER COLUMN n TYPE bigint USING n * 10")
	step("type change and a row change in its transaction", true, "column s changed type text -> character varying(20)",
		"BEGIN; ALTER TABLE t ALTER COLUMN s TYPE varchar(20) USING upper(s); UPDATE t SET n = n + 1 WHERE id = 1; COMMIT")
	step("same type through USING", true, "column n was altered and the table rewritten",
		"ALTER TABLE t ALTER COLUMN n TYPE bigint USING n + 1", "UPDATE t SET s = 'x' WHERE id = 2")
	step("random()", true, "column r was added with a volatile default",
		"ALTER TABLE t ADD COLUMN r float8 DEFAULT random()")
	step("gen_random_uuid() and a row change", true, "column u was added with a volatile default",
		"ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid()", "UPDATE t SET n = 0 WHERE id = 3")
	step("now() is a fast default", false, "",
		"ALTER TABLE t ADD COLUMN at date DEFAULT now()", "UPDATE t SET n = 1 WHERE id = 4")
	step("constant default", false, "",
		"ALTER TABLE t ADD COLUMN k int DEFAULT 7", "UPDATE t SET n = 2 WHERE id = 5")
	step("no default", false, "",
		"ALTER TABLE t ADD COLUMN e text", "UPDATE t SET e = 'e' WHERE id = 6")
	step("truncate and vacuum full", false, "",
		"VACUUM FULL t", "UPDATE t SET n = 3 WHERE id = 7", "TRUNCATE t", "INSERT INTO t (id, n) VALUES (1, 1)")
	if n := m.resetCount(change.TableID{Schema: "public", Name: "other"}); n != 1 {
		t.Errorf("other was re-snapshotted (%d resets): only t should be", n)
	}
}

// TestRewriteWhileStopped: a column's type changed while sluice was not
// running is found at start-up, though the stream's first relation message
// already has the new type.
func TestRewriteWhileStopped(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), rewriteSetup)
	var logs logBuffer
	mod := func(c *Config) { c.Logger = logs.logger() }
	s := newSource(t, url, mod, "t", "other")
	tables, err := s.Prepare(ctx)
	must(t, err)
	m := newMemTarget()
	stop := runPipeline(t, s, m, tables)
	waitMirrored(t, m, url, "t", "id")
	exec(t, url, "INSERT INTO other VALUES (2, 'two')")
	waitMirrored(t, m, url, "other", "id")
	stop()

	exec(t, url, "ALTER TABLE t ALTER COLUMN n TYPE numeric(12,2) USING n / 3.0", "UPDATE t SET s = 'after' WHERE id = 1",
		"INSERT INTO other VALUES (3, 'three')")
	s2 := newSource(t, url, func(c *Config) { mod(c); c.Pipeline = s.cfg.Pipeline }, "t", "other")
	tables, err = s2.Prepare(ctx)
	must(t, err)
	runPipeline(t, s2, m, tables)
	waitMirrored(t, m, url, "t", "id")
	waitMirrored(t, m, url, "other", "id")
	if got := m.resetCount(change.TableID{Schema: "public", Name: "t"}); got != 2 {
		t.Errorf("%d resets of t, want 2", got)
	}
	if !strings.Contains(logs.String(), "column n was added or altered after the slot's position") {
		t.Errorf("the start-up check is not logged:\n%s", logs.String())
	}
}
