package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// Postgres -> sluice producer -> local Kinesis -> sluice consumer ->
// Postgres target, with kill -9 of both halves while a random workload runs;
// at the end verify passes.
func TestKinesisEndToEndWithKills(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "changes", 3); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "postgres")
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
  kinesis: {stream: changes, endpoint: %q, region: %s}
`, e.name+"_"+role, e.src, e.target, state, role, k.Endpoint, k.Region))
		return path
	}
	producer, consumer := conf("producer"), conf("consumer")
	startHalf := func(cfg string) *proc { return e.start("run", "--config", cfg) }
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	werr := make(chan error, 1)
	go func() { werr <- newWorkload(e.src, 11, 20000).run(wctx, 1_000_000) }()
	rng := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 4; i++ {
		pp, cp := startHalf(producer), startHalf(consumer)
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
		for _, p := range []*proc{pp, cp} {
			if p.exited() {
				t.Fatalf("a half exited by itself:\n%s\nkinesalite:\n%s", p.out.String(), k.Output())
			}
		}
		// Kill the halves in a random order.
		if rng.IntN(2) == 0 {
			pp, cp = cp, pp
		}
		pp.kill()
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		cp.kill()
		t.Logf("kill -9 of both halves, round %d", i+1)
	}
	stop()
	if err := <-werr; err != nil && wctx.Err() == nil {
		t.Fatal(err)
	}
	pp, cp := startHalf(producer), startHalf(consumer)
	e.waitRunning(cp)
	out := e.waitVerifiedArgs([]string{"verify", "--config", consumer}, 2*time.Minute, pp, cp)
	t.Logf("after the kills:\n%s", out)
	if m := e.metrics(e.name + "_producer"); !strings.Contains(m, "sluice_kinesis_producer_in_flight_bytes") {
		t.Errorf("producer metrics lack in-flight bytes:\n%s", m)
	}
	if m := e.metrics(e.name + "_consumer"); !strings.Contains(m, "sluice_kinesis_shard_millis_behind_latest") {
		t.Errorf("consumer metrics lack per-shard lag:\n%s", m)
	}
	out, code := e.sluice("status", "--config", consumer)
	if !strings.Contains(out, "millis_behind_latest") {
		t.Errorf("consumer status lacks per-shard lag:\n%s", out)
	}
	if code != 0 {
		t.Errorf("status of the consumer: exit %d\n%s", code, out)
	}
	pp.stop(t)
	cp.stop(t)
}

func init() {
	// Any static credentials work against the local Kinesis servers.
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_EC2_METADATA_DISABLED": "true"} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
}
