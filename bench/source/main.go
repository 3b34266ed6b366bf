// Command sourcebench measures sluice's Postgres source against
// pg_recvlogical on the same WAL, and its peak memory on one huge
// transaction. It starts its own throwaway Postgres; run it through run.sh.
//
//	sourcebench throughput [-changes N]   both drain identical slots; prints rates and ratio
//	sourcebench bigtxn [-rows N]          peak RSS while streaming one N-row transaction
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/source/postgres"
	"github.com/sluice-dev/sluice/internal/testenv"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sourcebench throughput|bigtxn [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	n := fs.Int("n", 0, "changes (throughput) or rows (bigtxn)")
	prof := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	_ = fs.Parse(os.Args[2:])
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sourcebench:", err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	var err error
	switch os.Args[1] {
	case "throughput":
		err = throughput(ctx, or(*n, 500_000))
	case "bigtxn":
		err = bigtxn(ctx, or(*n, 1_000_000))
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "sourcebench:", err)
		os.Exit(1)
	}
}

func or(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

const tableSQL = `CREATE TABLE orders (id bigint PRIMARY KEY, customer text, created_at timestamptz,
	amount numeric(12,2), paid boolean, meta jsonb, note text)`

func startPostgres(ctx context.Context) (*testenv.Postgres, string, func(), error) {
	p, err := testenv.StartPostgres(ctx, testenv.PostgresOptions{Settings: []string{"max_wal_size = 4GB", "checkpoint_timeout = 30min"}})
	if err != nil {
		return nil, "", nil, err
	}
	stop := func() {
		// As root the server runs under runuser, which does not pass on
		// Stop's signal: signal the postmaster directly.
		if b, err := os.ReadFile(filepath.Join(p.Dir, "data", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil {
				_ = syscall.Kill(pid, syscall.SIGINT)
			}
		}
		p.Stop()
	}
	db, err := p.CreateDatabase(ctx, "bench")
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	url := p.URL(db)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, tableSQL); err != nil {
		stop()
		return nil, "", nil, err
	}
	return p, url, stop, nil
}

func newSource(url string) (*postgres.Source, error) { return newSourceSlot(url, "") }

func newSourceSlot(url, slot string) (*postgres.Source, error) {
	return postgres.New(postgres.Config{URL: url, Pipeline: "bench", Slot: slot, Tables: []change.TableID{{Schema: "public", Name: "orders"}},
		Logger: slog.New(slog.DiscardHandler)})
}

func execAll(ctx context.Context, url string, sqls ...string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%.60s: %w", q, err)
		}
	}
	return nil
}

func currentLSN(ctx context.Context, url string) (change.LSN, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		return 0, err
	}
	return change.ParseLSN(s)
}

// drain streams until the Ack reaches end, encoding every change into a
// change record as the stream stage would. It returns the change count.
func drain(ctx context.Context, s *postgres.Source, end change.LSN) (int64, int64, error) {
	return drainMode(ctx, s, end, true)
}

func drainMode(ctx context.Context, s *postgres.Source, end change.LSN, encode bool) (int64, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var count, bytes atomic.Int64
	meta := change.RecordMeta{Pipeline: "bench", Database: "bench"}
	buf := make([]byte, 0, 64<<10)
	err := s.Stream(ctx, func(_ context.Context, b *change.Batch) error {
		meta.Emitted = time.Now()
		for i := 0; encode && i < len(b.Changes); i++ {
			buf = change.AppendRecord(buf[:0], &b.Changes[i], meta)
			bytes.Add(int64(len(buf)))
		}
		count.Add(int64(len(b.Changes)))
		if b.Ack != 0 {
			s.Confirm(b.Ack)
			if b.Ack >= end {
				cancel()
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return 0, 0, err
	}
	return count.Load(), bytes.Load(), nil
}

func throughput(ctx context.Context, changes int) error {
	p, url, stop, err := startPostgres(ctx)
	if err != nil {
		return err
	}
	defer stop()
	// Two slots for each reader, all created before the workload, so every
	// reader drains the same WAL; the runs alternate (recv, sluice, sluice
	// decode-only, sluice, recv) so neither gains from going first or last.
	var sources []*postgres.Source
	for _, slot := range []string{"sluice_bench_a", "sluice_bench_b", "sluice_bench_c"} {
		s, err := newSourceSlot(url, slot)
		if err != nil {
			return err
		}
		if _, err := s.Prepare(ctx); err != nil {
			return err
		}
		sources = append(sources, s)
	}
	if err := execAll(ctx, url, "SELECT pg_create_logical_replication_slot('recv_a', 'pgoutput')",
		"SELECT pg_create_logical_replication_slot('recv_b', 'pgoutput')"); err != nil {
		return err
	}
	// Workload: half inserts, 30% updates, 20% deletes, in transactions of 5,000.
	ins, upd := changes/2, changes*3/10
	del := changes - ins - upd
	var sqls []string
	for lo := 1; lo <= ins; lo += 5000 {
		hi := min(lo+4999, ins)
		sqls = append(sqls, fmt.Sprintf(`INSERT INTO orders SELECT g, 'customer ' || g, now() - g * interval '1 second',
			g * 1.25, g %% 2 = 0, jsonb_build_object('source', 'web', 'n', g), CASE WHEN g %% 3 = 0 THEN NULL ELSE 'note' END
			FROM generate_series(%d, %d) g`, lo, hi))
	}
	for lo := 1; lo <= upd; lo += 5000 {
		sqls = append(sqls, fmt.Sprintf("UPDATE orders SET amount = amount + 1, paid = NOT paid WHERE id BETWEEN %d AND %d", lo, min(lo+4999, upd)))
	}
	for lo := ins - del + 1; lo <= ins; lo += 5000 {
		sqls = append(sqls, fmt.Sprintf("DELETE FROM orders WHERE id BETWEEN %d AND %d", lo, min(lo+4999, ins)))
	}
	t0 := time.Now()
	if err := execAll(ctx, url, sqls...); err != nil {
		return err
	}
	end, err := currentLSN(ctx, url)
	if err != nil {
		return err
	}
	fmt.Printf("workload: %d changes (%d inserts, %d updates, %d deletes) in %s, WAL end %s\n", changes, ins, upd, del, time.Since(t0).Round(time.Millisecond), end)

	recv := func(slot string) (time.Duration, error) {
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, filepath.Join(p.Bin, "pg_recvlogical"), "-d", url, "--slot", slot, "--start", "-E", end.String(),
			"-o", "proto_version=1", "-o", "publication_names=sluice_bench", "-f", "/dev/null", "--no-loop")
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("pg_recvlogical: %w: %s", err, out)
		}
		d := time.Since(t0)
		fmt.Printf("  pg_recvlogical (%s): %d changes in %s = %.0f changes/s\n", slot, changes, d.Round(time.Millisecond), float64(changes)/d.Seconds())
		return d, nil
	}
	sluice := func(s *postgres.Source) (time.Duration, error) {
		t0 := time.Now()
		got, recBytes, err := drain(ctx, s, end)
		if err != nil {
			return 0, err
		}
		d := time.Since(t0)
		if got != int64(changes) {
			return 0, fmt.Errorf("sluice emitted %d changes, want %d", got, changes)
		}
		fmt.Printf("  sluice source (%s; decode + JSON record encode, %d MB of records): %d changes in %s = %.0f changes/s\n",
			s.SlotName(), recBytes>>20, got, d.Round(time.Millisecond), float64(got)/d.Seconds())
		return d, nil
	}
	decodeOnly := func(s *postgres.Source) error {
		t0 := time.Now()
		got, _, err := drainMode(ctx, s, end, false)
		if err != nil {
			return err
		}
		d := time.Since(t0)
		fmt.Printf("  sluice source (%s; decode only, no record encoding): %d changes in %s = %.0f changes/s\n",
			s.SlotName(), got, d.Round(time.Millisecond), float64(got)/d.Seconds())
		return nil
	}
	var recvTotal, sluiceTotal time.Duration
	steps := []func() error{
		func() error { d, err := recv("recv_a"); recvTotal += d; return err },
		func() error { d, err := sluice(sources[0]); sluiceTotal += d; return err },
		func() error { return decodeOnly(sources[2]) },
		func() error { d, err := sluice(sources[1]); sluiceTotal += d; return err },
		func() error { d, err := recv("recv_b"); recvTotal += d; return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	recvRate := float64(2*changes) / recvTotal.Seconds()
	sluiceRate := float64(2*changes) / sluiceTotal.Seconds()
	fmt.Printf("pg_recvlogical: %.0f changes/s (mean of 2 runs, writing pgoutput bytes to /dev/null)\n", recvRate)
	fmt.Printf("sluice source:  %.0f changes/s (mean of 2 runs, decoding and encoding every change record)\n", sluiceRate)
	fmt.Printf("ratio sluice/pg_recvlogical: %.2f\n", sluiceRate/recvRate)
	return nil
}

func bigtxn(ctx context.Context, rows int) error {
	_, url, stop, err := startPostgres(ctx)
	if err != nil {
		return err
	}
	defer stop()
	s, err := newSource(url)
	if err != nil {
		return err
	}
	if _, err := s.Prepare(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	err = execAll(ctx, url, fmt.Sprintf(`INSERT INTO orders SELECT g, 'customer ' || g, now(), g * 1.25, true,
		jsonb_build_object('n', g), repeat('x', 100) FROM generate_series(1, %d) g`, rows))
	if err != nil {
		return err
	}
	end, err := currentLSN(ctx, url)
	if err != nil {
		return err
	}
	fmt.Printf("one transaction of %d rows written in %s\n", rows, time.Since(t0).Round(time.Millisecond))
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	t0 = time.Now()
	got, _, err := drain(ctx, s, end)
	if err != nil {
		return err
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("streamed %d changes in %s (%.0f changes/s)\n", got, time.Since(t0).Round(time.Millisecond), float64(got)/time.Since(t0).Seconds())
	fmt.Printf("peak RSS of the sluice process: %d MiB (before streaming: %d MiB; limit 512 MiB)\n", ru.Maxrss>>10, before.Maxrss>>10)
	if got != int64(rows) {
		return fmt.Errorf("streamed %d changes, want %d", got, rows)
	}
	if ru.Maxrss>>10 >= 512 {
		return fmt.Errorf("peak RSS %d MiB is over 512 MiB", ru.Maxrss>>10)
	}
	return nil
}
