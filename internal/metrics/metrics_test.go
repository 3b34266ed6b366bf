package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/source/postgres"
	"github.com/sluice-dev/sluice/internal/stream/kinesis"
)

func TestHandlerExposesEveryFigure(t *testing.T) {
	h := Handler("shop", Sources{
		Pipeline: func() pipeline.Stats {
			return pipeline.Stats{Applied: 42, Batches: 3, LagSeconds: 0.5, QueueBytes: 1024,
				Tables:        map[string]*pipeline.TableStats{"public.customers": {Changes: 40, SnapshotRows: 30}},
				Stall:         &pipeline.Stall{Since: time.Now().Add(-time.Minute), Table: "public.customers", Class: pipeline.Permanent},
				ApplyFailures: []pipeline.FailureCount{{Table: "public.customers", Class: pipeline.Permanent, Count: 4}}}
		},
		ConsumerApply: func() pipeline.Health {
			return pipeline.Health{Failures: []pipeline.FailureCount{{Class: pipeline.Transient, Count: 2}}}
		},
		Slot: func(context.Context) (postgres.Status, error) {
			return postgres.Status{Slot: "sluice_shop", Active: true, RetainedBytes: 4096, LagBytes: 128}, nil
		},
		Producer: func() kinesis.SinkStats { return kinesis.SinkStats{Stream: "s", Records: 7, InFlightBytes: 512} },
		Consumer: func() kinesis.ReaderStats {
			return kinesis.ReaderStats{Stream: "s", Read: 9, Shards: map[string]kinesis.ShardStats{"shardId-000000000001": {MillisBehindLatest: 250}}}
		},
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`sluice_applied_changes_total{pipeline="shop"} 42`,
		`sluice_table_snapshot_rows_total{pipeline="shop",table="public.customers"} 30`,
		`sluice_slot_retained_wal_bytes{pipeline="shop",slot="sluice_shop"} 4096`,
		`sluice_kinesis_producer_in_flight_bytes{pipeline="shop",stream="s"} 512`,
		`sluice_kinesis_shard_millis_behind_latest{pipeline="shop",shard="shardId-000000000001",stream="s"} 250`,
		`sluice_apply_failures_total{class="permanent",pipeline="shop",stage="target",table="public.customers"} 4`,
		`sluice_stalled{pipeline="shop",stage="target"} 1`,
		`sluice_apply_failures_total{class="transient",pipeline="shop",stage="kinesis_consumer",table=""} 2`,
		`sluice_stalled{pipeline="shop",stage="kinesis_consumer"} 0`,
		`sluice_stalled_seconds{pipeline="shop",stage="kinesis_consumer"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
}
