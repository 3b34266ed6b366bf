package app

import (
	"flag"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/metrics"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// scrape returns the body of /metrics.
func scrape(t *testing.T, r *Running) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

// The views' figure, pinned like the other parts' (a rename breaks users'
// alerts): each configured view, 1 when stopped, and a stopped view the
// configuration no longer names.
func TestViewFiguresGolden(t *testing.T) {
	views := viewIDs([]config.ViewSpec{{Name: "per_grp"}, {Name: "public.totals"}, {Name: "sales.daily"}})
	stopped := func() map[change.TableID]string {
		return map[change.TableID]string{
			{Schema: "public", Name: "totals"}: "view public.totals stopped: key not unique",
			{Schema: "public", Name: "gone"}:   "view public.gone stopped: cast failed",
		}
	}
	r := &Running{cfg: &config.Config{Pipeline: "shop"}, figures: []metrics.Reporter{viewFigures(views, stopped)}}
	got := scrape(t, r)
	path := filepath.Join("testdata", "view_metrics.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("/metrics differs from %s (-update only for an intended change):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// checkMetrics fails unless /metrics has every line of want.
func checkMetrics(t *testing.T, r *Running, want ...string) {
	t.Helper()
	m := scrape(t, r)
	for _, w := range want {
		if !strings.Contains(m, w) {
			t.Errorf("metrics lack %s:\n%s", w, m)
		}
	}
}
