package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A random workload mirrored into each target; verify while running and
// after a graceful stop; status and query while running.
func TestMirrorRandomWorkload(t *testing.T) {
	for _, kind := range []string{"duckdb", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, kind)
			e.createWorkTables(3000)
			p := e.start(e.args("run", workTables)...)
			if err := newWorkload(e.src, 1, 3000).run(ctx, 300); err != nil {
				t.Fatal(err)
			}
			out := e.waitVerified(workTables, 90*time.Second, p)
			if !strings.Contains(out, "every table matches") || !strings.Contains(out, "compared at source position") {
				t.Errorf("verify while running did not compare at a consistent point:\n%s", out)
			}
			// Verify holds while changes keep flowing.
			wctx, stop := context.WithCancel(ctx)
			werr := make(chan error, 1)
			go func() { werr <- newWorkload(e.src, 2, 100000).run(wctx, 1_000_000) }()
			time.Sleep(500 * time.Millisecond)
			out, code := e.sluice(e.args("verify", workTables)...)
			stop()
			if err := <-werr; err != nil && wctx.Err() == nil {
				t.Fatal(err)
			}
			if code != 0 {
				t.Errorf("verify while changes flow: exit %d\n%s", code, out)
			}

			// Caught up once the workload stops.
			e.waitVerified(workTables, 60*time.Second, p)
			out, code = e.sluice(e.args("status", workTables, "--json")...)
			var st struct {
				Running bool `json:"running"`
				Slot    struct {
					Name string `json:"name"`
				} `json:"slot"`
				Stats struct {
					Applied int64 `json:"applied_changes"`
				} `json:"stats"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &st) != nil || !st.Running || st.Slot.Name == "" || st.Stats.Applied == 0 {
				t.Errorf("status while running: exit %d\n%s", code, out)
			}
			if m := e.metrics(e.name); !strings.Contains(m, `sluice_applied_changes_total{pipeline="`+e.name+`"}`) || !strings.Contains(m, "sluice_slot_retained_wal_bytes") {
				t.Errorf("metrics while running lack the pipeline's figures:\n%s", m)
			}
			out, code = e.sluice(e.args("query", workTables, "SELECT count(*) AS n FROM accounts")...)
			if code != 0 || !strings.Contains(out, "(1 rows)") {
				t.Errorf("query while running: exit %d\n%s", code, out)
			}
			p.stop(t)
			out = e.waitVerified(workTables, 30*time.Second)
			if !strings.Contains(out, "not running") {
				t.Errorf("verify after stop should say sluice is not running:\n%s", out)
			}
			out, code = e.sluice(e.args("status", workTables)...)
			if code != 0 || !strings.Contains(out, "not running") || !strings.Contains(out, "public.accounts") {
				t.Errorf("status after stop: exit %d\n%s", code, out)
			}
		})
	}
}

// kill -9 at random moments during snapshot and streaming, restart each
// time; at the end verify finds no missing and no extra rows.
func TestCrashRecovery(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "duckdb")
	e.createWorkTables(150000)
	cfg := filepath.Join(e.dir, "sluice.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.accounts, public.notes]
target: %q
state_dir: %q
snapshot: {workers: 2, chunk_rows: 3000}
batch: {max_changes: 500, interval: 50ms}
`, e.name, e.src, e.target, filepath.Join(e.dir, "state")))
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	werr := make(chan error, 1)
	go func() { werr <- newWorkload(e.src, 3, 150000).run(wctx, 1_000_000) }()
	rng := rand.New(rand.NewPCG(7, 7))
	midSnapshot, streaming := 0, 0
	for i := 0; i < 6; i++ {
		p := e.start("run", "--config", cfg)
		var wait time.Duration
		if i < 3 {
			// Early: once the snapshot started, at a random moment (the
			// start-up's length depends on how busy the machine is).
			deadline := time.Now().Add(2 * time.Minute)
			for !strings.Contains(p.out.String(), "snapshot started") && !strings.Contains(p.out.String(), "msg=streaming") {
				if p.exited() || time.Now().After(deadline) {
					t.Fatalf("run %d never started its snapshot:\n%s", i, p.out.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			wait = time.Duration(20+rng.IntN(300)) * time.Millisecond
		} else {
			// Once streaming, at a random moment.
			deadline := time.Now().Add(2 * time.Minute)
			for !strings.Contains(p.out.String(), "msg=streaming") {
				if p.exited() || time.Now().After(deadline) {
					t.Fatalf("run %d never started streaming:\n%s", i, p.out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			wait = time.Duration(100+rng.IntN(1500)) * time.Millisecond
		}
		time.Sleep(wait)
		if p.exited() {
			t.Fatalf("run %d exited by itself:\n%s", i, p.out.String())
		}
		p.kill()
		log := p.out.String()
		phase := "start-up"
		switch {
		case strings.Contains(log, "msg=streaming"):
			phase = "streaming"
			streaming++
		case strings.Contains(log, "snapshot started"):
			phase = "mid-snapshot"
			midSnapshot++
		}
		t.Logf("kill -9 #%d after %s: %s", i+1, wait, phase)
	}
	if midSnapshot == 0 || streaming < 3 {
		t.Errorf("%d kills mid-snapshot and %d while streaming: want at least 1 and 3", midSnapshot, streaming)
	}
	stop()
	if err := <-werr; err != nil && wctx.Err() == nil {
		t.Fatal(err)
	}
	p := e.start("run", "--config", cfg)
	e.waitRunning(p)
	out := e.waitVerifiedArgs([]string{"verify", "--config", cfg}, 2*time.Minute, p)
	t.Logf("after 6 kills:\n%s", out)
	p.stop(t)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
