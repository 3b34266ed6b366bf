package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Postgres -> sluice producer -> Kafka -> sluice consumer -> Postgres and
// DuckDB targets, with kill -9 of both halves while a random workload runs;
// at the end verify passes. The broker is franz-go's in-process kfake,
// running in this test process so that it outlives the killed halves.
func TestKafkaEndToEndWithKills(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(4, "changes_postgres", "changes_duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ", ")
	for _, kind := range []string{"postgres", "duckdb"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			e.createWorkTables(20000)
			state := filepath.Join(e.dir, "state")
			conf := func(role string) string {
				path := filepath.Join(e.dir, role+".yaml")
				writeFile(t, path, fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.accounts, public.notes]
target: %q
state_dir: %q
snapshot: {chunk_rows: 2000}
batch: {max_changes: 1000, interval: 50ms}
stream:
  role: %s
  kafka: {brokers: %q, topic: changes_%s}
`, e.name+"_"+role, e.src, e.target, state, role, brokers, kind))
				return path
			}
			producer, consumer := conf("producer"), conf("consumer")
			startHalf := func(cfg string) *proc { return e.start("run", "--config", cfg) }
			wctx, stop := context.WithCancel(context.Background())
			defer stop()
			werr := make(chan error, 1)
			go func() { werr <- newWorkload(e.src, 13, 20000).run(wctx, 1_000_000) }()
			rng := rand.New(rand.NewPCG(7, 7))
			for i := 0; i < 3; i++ {
				pp, cp := startHalf(producer), startHalf(consumer)
				time.Sleep(time.Duration(800+rng.IntN(2000)) * time.Millisecond)
				for _, p := range []*proc{pp, cp} {
					if p.exited() {
						t.Fatalf("a half exited by itself:\n%s", p.out.String())
					}
				}
				if rng.IntN(2) == 0 {
					pp, cp = cp, pp
				}
				pp.kill()
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
				cp.kill()
				t.Logf("kill -9 of both halves, round %d", i+1)
				if i == 1 {
					// A partition leader moves while nothing runs: the next
					// producer and consumer find it on another broker.
					if err := cluster.MoveTopicPartition("changes_"+kind, 0, (cluster.LeaderFor("changes_"+kind, 0)+1)%3); err != nil {
						t.Fatal(err)
					}
				}
			}
			stop()
			if err := <-werr; err != nil && wctx.Err() == nil {
				t.Fatal(err)
			}
			pp, cp := startHalf(producer), startHalf(consumer)
			e.waitRunning(cp)
			out := e.waitVerifiedArgs([]string{"verify", "--config", consumer}, 2*time.Minute, pp, cp)
			t.Logf("after the kills:\n%s", out)
			if m := e.metrics(e.name + "_producer"); !strings.Contains(m, "sluice_kafka_producer_records_total") {
				t.Errorf("producer metrics lack Kafka records:\n%s", m)
			}
			// The consumer runs the pipeline: its figures beside the reader's.
			if m := e.metrics(e.name + "_consumer"); !strings.Contains(m, "sluice_kafka_partition_lag_records") ||
				!strings.Contains(m, "sluice_applied_changes_total{") || !strings.Contains(m, `stage="kafka_consumer"`) {
				t.Errorf("consumer metrics lack per-partition lag or the pipeline's figures:\n%s", m)
			}
			out, code := e.sluice("status", "--config", consumer)
			if !strings.Contains(out, "high_watermark") || !strings.Contains(out, "stream consumer: applied") ||
				!strings.Contains(out, "confirmed batch") || code != 0 {
				t.Errorf("consumer status (exit %d) lacks per-partition figures or the pipeline's:\n%s", code, out)
			}
			pp.stop(t)
			cp.stop(t)
		})
	}
}
