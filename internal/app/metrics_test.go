package app

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

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
