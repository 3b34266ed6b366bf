package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The README's first command must keep working: a throwaway Postgres, a
// live workload, the DuckDB mirror, verify.
func TestQuickstart(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(binary, "quickstart", "--duration", "3s", "--rows", "5000", "--dir", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart: %v\n%s", err, out)
	}
	// The views are verified like the mirrored tables.
	for _, want := range []string{"snapshot 100%", "public.order_facts", "public.customer_totals", "every table matches", dir + "/customers.duckdb", "query --target duckdb:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, out)
		}
	}
	q := exec.Command(binary, "query", "--target", "duckdb:"+dir+"/customers.duckdb", "SELECT count(*) AS n FROM customers")
	qout, err := q.CombinedOutput()
	if err != nil || !strings.Contains(string(qout), "(1 rows)") {
		t.Errorf("query after quickstart: %v\n%s", err, qout)
	}
	q = exec.Command(binary, "query", "--target", "duckdb:"+dir+"/customers.duckdb", "SELECT count(*) AS n FROM customer_totals WHERE orders > 0")
	if qout, err := q.CombinedOutput(); err != nil || !strings.Contains(string(qout), "(1 rows)") {
		t.Errorf("query of a view after quickstart: %v\n%s", err, qout)
	}
}
