package e2e

import (
	"strings"
	"testing"
	"time"
)

// ADD COLUMN and DROP COLUMN at the source reach the target without a
// restart; unchanged TOASTed values keep their stored value.
func TestSchemaChangeAndToast(t *testing.T) {
	for _, kind := range []string{"duckdb", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			e.exec(`CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO docs SELECT i, 't' || i, repeat(md5(i::text), 1000) FROM generate_series(1, 50) i;`)
			p := e.start(e.args("run", "public.docs")...)
			e.waitVerified("public.docs", 60*time.Second, p)
			// body is TOASTed and unchanged by this update: it must survive.
			e.exec(`UPDATE docs SET title = title || '!' WHERE id <= 25`)
			e.exec(`ALTER TABLE docs ADD COLUMN rating int DEFAULT 3`)
			e.exec(`UPDATE docs SET rating = id WHERE id > 40`)
			e.exec(`INSERT INTO docs VALUES (100, 'new', 'short', 5)`)
			e.exec(`ALTER TABLE docs DROP COLUMN title`)
			e.exec(`INSERT INTO docs VALUES (101, 'after drop', 1)`)
			e.exec(`UPDATE docs SET rating = 0 WHERE id = 1`)
			out := e.waitVerified("public.docs", 60*time.Second, p)
			if p.exited() {
				t.Fatalf("run stopped on a schema change:\n%s", p.out.String())
			}
			out2, _ := e.sluice(e.args("query", "public.docs", "SELECT count(*) FILTER (WHERE length(body) = 32000) AS toasted FROM docs")...)
			if !strings.Contains(out2, "50") {
				t.Errorf("TOASTed bodies were not kept:\n%s", out2)
			}
			// Dropped and added again under the same name: a new column,
			// NULL for every row that existed, not the old values.
			// (The source learns column numbers from the current catalog, so
			// this is exact once the stream has caught up with the changes
			// before the DROP: see the known gaps in the README.)
			e.exec(`UPDATE docs SET rating = 7 WHERE id = 2`)
			e.waitVerified("public.docs", 60*time.Second, p)
			e.exec(`ALTER TABLE docs DROP COLUMN rating`)
			e.exec(`ALTER TABLE docs ADD COLUMN rating int`)
			e.exec(`INSERT INTO docs VALUES (102, 'readded', 9)`)
			e.waitVerified("public.docs", 60*time.Second, p)
			out3, _ := e.sluice(e.args("query", "public.docs", "SELECT count(rating) AS rated FROM docs")...)
			if !strings.Contains(out3, "rated\n1 ") && !strings.Contains(out3, "\n1\n") {
				t.Errorf("after dropping and adding rating again only the new row has one:\n%s", out3)
			}
			p.stop(t)
			_ = out
		})
	}
}
