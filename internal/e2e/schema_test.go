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
			p.stop(t)
			_ = out
		})
	}
}
