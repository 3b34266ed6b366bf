package metrics_test

import (
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-dev/sluice/internal/metrics"
)

var (
	depth = &metrics.Family{Name: "sluice_test_depth", Help: "A gauge.", Kind: metrics.Gauge, Labels: []string{"lane"}}
	seen  = &metrics.Family{Name: "sluice_test_seen_total", Help: "A counter.", Kind: metrics.Counter}
)

// Every figure carries the pipeline label first; a live reporter is asked
// again at each scrape.
func TestHandlerReportsAtEachScrape(t *testing.T) {
	var n atomic.Int64
	live := metrics.ReporterFunc(func(emit metrics.Emit) {
		emit(seen, float64(n.Add(1)))
		emit(depth, 3, "a")
	})
	h := metrics.Handler("shop", live)
	_ = scrape(t, h)
	body := scrape(t, h)
	for _, want := range []string{
		"# TYPE sluice_test_seen_total counter\nsluice_test_seen_total{pipeline=\"shop\"} 2\n",
		"# TYPE sluice_test_depth gauge\nsluice_test_depth{lane=\"a\",pipeline=\"shop\"} 3\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// A component reporting the wrong number of label values fails the
// scrape, naming the family, instead of panicking in the process.
func TestHandlerRefusesBadLabels(t *testing.T) {
	bad := metrics.ReporterFunc(func(emit metrics.Emit) { emit(depth, 1) })
	rec := httptest.NewRecorder()
	metrics.Handler("shop", bad).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "sluice_test_depth") {
		t.Errorf("scrape with a label missing: %d %s, want 500 naming the family", rec.Code, rec.Body)
	}
}
