package app

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/verify"
)

// directConfig is a direct pipeline from a throwaway Postgres with table
// public.t (and a view over it) into a DuckDB file.
func directConfig(t *testing.T) (*config.Config, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	pg := testenv.NewPostgres(t, testenv.PostgresOptions{})
	db, err := pg.CreateDatabase(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, grp int NOT NULL, v text);
INSERT INTO t SELECT i, i % 3, 'v' || i FROM generate_series(1, 500) AS i`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := config.Default()
	c.Pipeline = "apptest"
	c.Source.URL = pg.URL(db)
	c.Tables = []config.TableSpec{{Name: "public.t"}}
	c.Views = []config.ViewSpec{{Name: "per_grp", SQL: "SELECT grp, count(*) AS n FROM public.t GROUP BY grp"}}
	c.Target.URL = "duckdb:" + filepath.Join(dir, "mirror.duckdb")
	c.StateDir = filepath.Join(dir, "state")
	c.Batch.Interval = 50 * time.Millisecond
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c, conn
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The direct mode end to end, in process: Run snapshots and streams into
// DuckDB with a view; while it runs, verify holds it at a common point
// through the admin endpoint, and status and query go through it; once it
// stopped, the same commands read the source and the file directly; and
// teardown removes the slot and publication.
func TestRunDirect(t *testing.T) {
	c, conn := directConfig(t)
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	started := make(chan *Running, 1)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, c, Options{Started: func(r *Running) { started <- r }}) }()
	var r *Running
	select {
	case r = <-started:
	case err := <-done:
		t.Fatalf("Run ended before it started: %v", err)
	}
	waitFor(t, "the snapshot", func() bool { return r.Stats().Phase == pipeline.PhaseStreaming })
	if _, err := conn.Exec(ctx, "UPDATE t SET v = 'changed' WHERE id <= 50; DELETE FROM t WHERE id > 490; INSERT INTO t VALUES (1000, 2, 'new')"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changes", func() bool { return r.Stats().Applied >= 61 })
	checkMetrics(t, r, `sluice_applied_changes_total{pipeline="apptest"}`, `sluice_slot_active{pipeline="apptest",slot="sluice_apptest"} 1`,
		`sluice_stalled{pipeline="apptest",stage="target"} 0`, `sluice_view_stopped{pipeline="apptest",view="public.per_grp"} 0`)

	rep, err := Verify(ctx, c, verify.Options{Buckets: 4, KeyLimit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Match || rep.At == "" || len(rep.Tables) != 2 {
		t.Errorf("verify while running: match %v, at %q, %d tables (%+v), want a match at a held point over the table and the view", rep.Match, rep.At, len(rep.Tables), rep)
	}
	st, err := Status(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Stats == nil || st.Slot == nil || st.Slot.Name == "" {
		t.Errorf("status while running: %+v", st)
	}
	res, err := Query(ctx, c, "SELECT count(*) FROM t")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || fmt.Sprint(res.Rows[0][0]) != "491" {
		t.Errorf("query through the running sluice: %+v", res.Rows)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run after a stop = %v, want nil", err)
	}
	st, err = Status(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || !st.Tables["public.t"].Snapshotted || !st.Tables["public.per_grp"].Snapshotted {
		t.Errorf("status once stopped: %+v", st)
	}
	if res, err = Query(ctx, c, "SELECT sum(n) FROM per_grp"); err != nil || len(res.Rows) != 1 {
		t.Errorf("query once stopped: %+v, %v", res, err)
	}
	rep, err = Verify(ctx, c, verify.Options{Buckets: 4, KeyLimit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Match || rep.At != "" || !strings.Contains(rep.Note, "not running") {
		t.Errorf("verify once stopped: %+v", rep)
	}
	removed, err := TeardownSource(ctx, c)
	if err != nil || len(removed) != 2 {
		t.Errorf("teardown removed %v (%v), want the slot and the publication", removed, err)
	}
}

// What batch.max_changes and max_bytes mean, the same in every mode.
func TestLimits(t *testing.T) {
	c := config.Default()
	c.Batch.MaxChanges, c.Batch.MaxBytes, c.Batch.QueueBytes = 1000, 1<<20, 8<<20
	got := limitsOf(c)
	want := limits{batchChanges: 1000, batchBytes: 1 << 20, applyChanges: 5000, applyBytes: 2 << 20, queueBytes: 8 << 20}
	if got != want {
		t.Errorf("limitsOf = %+v, want %+v", got, want)
	}
	// The defaults keep what each mode did before they were one rule.
	d := limitsOf(config.Default())
	if d.batchChanges != 10_000 || d.applyChanges != 50_000 || d.applyBytes != 32<<20 {
		t.Errorf("default limits %+v", d)
	}
}

// Both halves through Kafka (kfake, in this process) in one Run: the
// producer's pipeline fills the topic, the consumer applies it to DuckDB.
// verify cannot hold a stream-fed target, says so by its code, and compares
// without a common point once the stream is drained.
func TestRunBothThroughKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "changes"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	c, conn := directConfig(t)
	c.Stream = &config.Stream{Role: "both", Kafka: &config.Kafka{Brokers: cluster.ListenAddrs(), Topic: "changes", ClientID: "sluice", MaxRecordBytes: 1_000_000}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	started := make(chan *Running, 1)
	go func() { done <- Run(runCtx, c, Options{Started: func(r *Running) { started <- r }}) }()
	var r *Running
	select {
	case r = <-started:
	case err := <-done:
		t.Fatalf("Run ended before it started: %v", err)
	}
	count := func() string {
		// the table's rows, and the rows the view counts
		res, err := Query(ctx, c, "SELECT (SELECT count(*) FROM t) || '/' || (SELECT sum(n) FROM per_grp)")
		if err != nil || len(res.Rows) != 1 {
			return ""
		}
		return fmt.Sprint(res.Rows[0][0])
	}
	waitFor(t, "the snapshot through Kafka", func() bool { return count() == "500/500" })
	if _, err := conn.Exec(ctx, "DELETE FROM t WHERE id > 490"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletes through Kafka", func() bool { return count() == "490/490" })
	checkMetrics(t, r, `sluice_applied_changes_total{pipeline="apptest"}`, `sluice_kafka_producer_records_total{pipeline="apptest",topic="changes"}`,
		`sluice_kafka_consumer_records_total{pipeline="apptest",topic="changes"}`, `sluice_kafka_partition_lag_records{partition="0",pipeline="apptest",topic="changes"}`,
		`sluice_stalled{pipeline="apptest",stage="target"} 0`, `sluice_stalled{pipeline="apptest",stage="kafka_consumer"} 0`,
		`sluice_view_stopped{pipeline="apptest",view="public.per_grp"} 0`)

	st, err := Status(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if stream, ok := st.Stream.([]any); !ok || len(stream) != 2 || st.Consumer == nil || st.Stats == nil {
		t.Errorf("status of both halves: stream %#v, consumer %v", st.Stream, st.Consumer)
	}
	// The consumer's pipeline applied the stream (the snapshot's 500 rows
	// and the 10 deletes) and confirmed its batches by token, no position.
	if cs := st.Consumer; cs == nil || cs.Applied < 510 || cs.ConfirmedBatch == 0 || cs.ConfirmedLSN != "" || cs.Tables["public.t"] == nil {
		t.Errorf("the consumer's pipeline in status: %+v", st.Consumer)
	}
	rep, err := Verify(ctx, c, verify.Options{Buckets: 4, KeyLimit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Match || rep.At != "" || !strings.Contains(rep.Note, "stream consumer") {
		t.Errorf("verify through the stream: %+v", rep)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run after a stop = %v, want nil", err)
	}
}
