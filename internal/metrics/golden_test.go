package metrics_test

import (
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/source/postgres"
	"github.com/sluice-dev/sluice/internal/stream/kafka"
	"github.com/sluice-dev/sluice/internal/stream/kinesis"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// Fixed figures of every component, as the golden files show them.
var (
	stalledSince  = time.Now().Add(-time.Minute)
	pipelineStats = pipeline.Stats{Applied: 42, Batches: 3, LagSeconds: 0.5, QueueBytes: 1024,
		Tables: map[string]*pipeline.TableStats{
			"public.customers": {Changes: 40, SnapshotRows: 30},
			"public.orders":    {Changes: 2},
		},
		Stall:         &pipeline.Stall{Since: stalledSince, Table: "public.customers", Class: pipeline.Permanent},
		ApplyFailures: []pipeline.FailureCount{{Table: "public.customers", Class: pipeline.Permanent, Count: 4}}}
	consumerHealth = pipeline.Health{Failures: []pipeline.FailureCount{{Class: pipeline.Transient, Count: 2}, {Table: "public.orders", Class: pipeline.Fatal, Count: 1}}}
	slotStatus     = postgres.Status{Slot: "sluice_shop", Active: true, RetainedBytes: 4096, LagBytes: 128}
	kinesisSink    = kinesis.SinkStats{Stream: "s", Records: 7, Bytes: 700, InFlightBytes: 512, Retries: 2, Throttles: 1, DeadLettered: 1}
	kinesisReader  = kinesis.ReaderStats{Stream: "s", Read: 9, Rejected: 1, Shards: map[string]kinesis.ShardStats{
		"shardId-000000000001": {MillisBehindLatest: 250}, "shardId-000000000002": {MillisBehindLatest: 0}}}
	kafkaSink   = kafka.SinkStats{Topic: "shop.changes", Records: 11, Bytes: 1100, InFlightBytes: 256, DeadLettered: 3}
	kafkaReader = kafka.ReaderStats{Topic: "shop.changes", Read: 13, Rejected: 2, Partitions: map[string]kafka.PartitionStats{
		"0": {Lag: 5}, "1": {Lag: 0}}}
)

// TestExpositionGolden pins the whole of /metrics (every family's name,
// help, type, label names and values) for a pipeline producing to and
// consuming from each stream, and for a stream consumer alone, each part reporting its own figures, so that
// a renamed figure, label or help text (users' dashboards and alerts) fails
// here. The golden files were taken from the handler before the parts
// reported their own figures. -update rewrites them.
func TestExpositionGolden(t *testing.T) {
	for name, parts := range map[string][]metrics.Reporter{
		"kinesis": {pipelineStats, slotStatus, kinesisSink, kinesisReader,
			pipeline.StageHealth{Stage: kinesis.ConsumerStage, Health: consumerHealth}},
		"kafka": {pipelineStats, slotStatus, kafkaSink, kafkaReader,
			pipeline.StageHealth{Stage: kafka.ConsumerStage, Health: consumerHealth}},
		// A consumer alone: its pipeline's figures, its apply health under
		// the reader's stage.
		"kafka_consumer": {pipeline.StageStats{Stage: kafka.ConsumerStage, Stats: pipelineStats}, kafkaReader},
	} {
		t.Run(name, func(t *testing.T) {
			checkGolden(t, name, scrape(t, metrics.Handler("shop", parts...)))
		})
	}
}

// elapsed is a stall's duration, the one figure that moves with the clock.
var elapsed = regexp.MustCompile(`(?m)^(sluice_stalled_seconds\{[^}]*\}) (\S+)$`)

// checkGolden compares an exposition with testdata/name.golden, a stall's
// running duration replaced by <elapsed> once checked to be the minute
// the fixed stall has lasted.
func checkGolden(t *testing.T, name string, body string) {
	t.Helper()
	got := elapsed.ReplaceAllStringFunc(body, func(line string) string {
		m := elapsed.FindStringSubmatch(line)
		if m[2] == "0" {
			return line
		}
		if v, err := strconv.ParseFloat(m[2], 64); err != nil || v < 60 || v > 3600 {
			t.Errorf("%s: want the minute the stall has lasted", line)
		}
		return m[1] + " <elapsed>"
	})
	path := filepath.Join("testdata", name+".golden")
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
		t.Errorf("/metrics differs from %s (a rename breaks users' dashboards; -update only for an intended change):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}
