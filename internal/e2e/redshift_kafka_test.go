package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// Redshift fed from Kafka, through the whole binary: Postgres -> sluice
// (producer and merge schedule) -> a Kafka topic (kfake, in this test
// process so that it outlives the killed sluice) -> the Kafka streaming
// view's stand-in -> the merge, with kill -9 of sluice while a random
// workload runs on a keyed, a composite-keyed and a keyless table; verify
// passes at the end, a last merge changes nothing, and the watermarks are
// per partition at the last offset merged.
func TestRedshiftFromKafkaWithKills(t *testing.T) {
	ctx := context.Background()
	const topic, partitions = "changes", 3
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	e := newEnv(t, "")
	const rows = 1000
	e.exec(seedCustomer + `;
CREATE TABLE notes (account int, seq int, body text, PRIMARY KEY (account, seq));
CREATE TABLE ledger (account int, delta int, note text);
ALTER TABLE ledger REPLICA IDENTITY FULL;` + fmt.Sprintf(`
INSERT INTO customers SELECT i, 'first ' || i, 'last ' || i, CASE WHEN i %% 3 = 0 THEN NULL ELSE '555-' || i END FROM generate_series(1, %d) i;
INSERT INTO notes SELECT i %% 100, i, repeat('x', i %% 50) FROM generate_series(1, %d) i;
INSERT INTO ledger SELECT i %% 5, i %% 3, CASE WHEN i %% 4 = 0 THEN NULL ELSE 'n' END FROM generate_series(1, 200) i;`, rows, rows))
	dstDB, err := pg.CreateDatabase(ctx, "dst_"+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	dst := pg.URL(dstDB)
	cfg := filepath.Join(e.dir, "redshift.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.customers, public.notes, public.ledger]
target: %q
state_dir: %q
snapshot: {chunk_rows: 250}
batch: {max_changes: 500, interval: 50ms}
stream:
  kafka: {brokers: %q, topic: %s}
redshift:
  role_arn: %s
  msk_cluster_arn: arn:aws:kafka:us-east-1:123456789012:cluster/shop/0b1c2d3e-4f56-7890-abcd-ef1234567890-7
  merge_interval: 300ms
  dialect: postgres
`, e.name, e.src, strings.Replace(dst, "postgres://", "redshift://", 1), filepath.Join(e.dir, "state"),
		strings.Join(brokers, ","), topic, testRoleARN))

	out, code := e.sluice("plan", "--config", cfg)
	if code != 0 || !strings.Contains(out, "from Kafka topic changes of Amazon MSK cluster") || !strings.Contains(out, `"kafka-cluster:ReadData"`) ||
		!strings.Contains(out, `"kafka_partition" BIGINT NOT NULL`) {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	out, code = e.sluice("setup", "--config", cfg)
	if code != 0 || !strings.Contains(out, `created table "_sluice"."changes"`) {
		t.Fatalf("setup: exit %d\n%s", code, out)
	}

	// The streaming view's job: read every partition and land each record.
	landing, err := pgx.Connect(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer landing.Close(ctx)
	ref := &testenv.KafkaStreamingView{Brokers: brokers, Topic: topic, Table: `"_sluice"."changes"`}
	defer ref.Close()
	refresh := startRefreshing(ctx, ref, landing)
	defer refresh.stop()

	wctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	werr := make(chan error, 1)
	go func() { werr <- runCustomerWorkload(wctx, e.src, 11, rows) }()
	rng := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 2; i++ {
		p := e.start("run", "--config", cfg)
		e.waitRunning(p)
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		if p.exited() {
			t.Fatalf("sluice exited by itself:\n%s", p.out.String())
		}
		p.kill()
		t.Logf("kill -9 of sluice, round %d", i+1)
	}
	p := e.start("run", "--config", cfg)
	e.waitRunning(p)
	time.Sleep(time.Second)
	stopWork()
	if err := <-werr; err != nil && wctx.Err() == nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, code = e.sluice("verify", "--config", cfg)
		if code == 0 {
			t.Logf("verify after the kills:\n%s", out)
			break
		}
		if err := refresh.Failed(); err != nil {
			t.Fatalf("refresh the landing table (the Kafka streaming view's stand-in): %v", err)
		}
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("verify never passed (exit %d):\n%s\nsluice:\n%s", code, out, p.out.String())
		}
		time.Sleep(time.Second)
	}
	p.stop(t)
	refresh.Stop(t)
	if _, err := ref.Refresh(ctx, landing); err != nil { // anything put after the last refresh
		t.Fatal(err)
	}
	if out, code = e.sluice("merge", "--config", cfg); code != 0 {
		t.Fatalf("merge: exit %d\n%s", code, out)
	}
	if out, code = e.sluice("verify", "--config", cfg); code != 0 {
		t.Fatalf("verify after the last merge: exit %d\n%s", code, out)
	}
	out, code = e.sluice("merge", "--config", cfg)
	if code != 0 || !strings.Contains(out, "public.customers: 0 records") || !strings.Contains(out, "public.ledger: 0 records") {
		t.Fatalf("second merge: exit %d\n%s", code, out)
	}
	// Each table that got records has one watermark per partition it got
	// records on, at the last offset of that partition it merged.
	var bad int
	if err := landing.QueryRow(ctx, `SELECT count(*) FROM "_sluice"."watermarks" w
WHERE w."kafka_offset" <> (SELECT max(v."kafka_offset") FROM "_sluice"."changes" v
  WHERE v."kafka_partition" = w."kafka_partition"
    AND '"' || (v."data"->'source'->>'schema') || '"."' || (v."data"->'source'->>'table') || '"' = w."table_name")`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	var marks, parts int
	if err := landing.QueryRow(ctx, `SELECT count(*), count(DISTINCT "kafka_partition") FROM "_sluice"."watermarks"`).Scan(&marks, &parts); err != nil {
		t.Fatal(err)
	}
	if bad != 0 || parts != partitions || marks < partitions {
		t.Errorf("watermarks: %d not at their partition's last offset of the table; %d watermarks over %d partitions, want every one of %d", bad, marks, parts, partitions)
	}
	if srcLedger, dstLedger := ledgerRows(t, e.src), ledgerRows(t, dst); srcLedger != dstLedger {
		t.Errorf("ledger differs:\nsource %s\nmirror %s", srcLedger, dstLedger)
	}
	out, code = e.sluice("teardown", "--config", cfg)
	if code != 0 || !strings.Contains(out, `removed redshift table "_sluice"."changes"`) {
		t.Errorf("teardown: exit %d\n%s", code, out)
	}
}
