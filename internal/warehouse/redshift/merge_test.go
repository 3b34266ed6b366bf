package redshift

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// One throwaway cluster for the package; each test gets its own database.
// Every connection goes through a proxy that reports the session parameters
// the way Redshift does (client_encoding UNICODE, no
// standard_conforming_strings), so nothing here relies on what only
// Postgres reports.
var (
	cluster *testenv.Postgres
	proxy   *testenv.RedshiftProxy
)

func TestMain(m *testing.M) {
	var err error
	cluster, err = testenv.StartPostgres(context.Background(), testenv.PostgresOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start throwaway postgres:", err)
		os.Exit(1)
	}
	proxy, err = testenv.StartRedshiftProxy(fmt.Sprintf("127.0.0.1:%d", cluster.Port))
	if err != nil {
		cluster.Stop()
		fmt.Fprintln(os.Stderr, "start the parameter proxy:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = proxy.Close()
	cluster.Stop()
	os.Exit(code)
}

// standInURL is the URL of database db of the stand-in, through the proxy.
func standInURL(db string) string { return proxy.URL(cluster.URL(db)) }

// env is one test's database with the Postgres stand-in set up.
type env struct {
	t    testing.TB
	ctx  context.Context
	conn *pgx.Conn
	db   *PgConn
	plan *Plan
	seq  map[string]*big.Int // next sequence number per shard
}

func newEnv(t testing.TB, tables ...*change.Table) *env {
	t.Helper()
	return newEnvConfig(t, seedConfig(Postgres, tables...))
}

// newEnvConfig is newEnv with the plan of cfg (a Postgres dialect one).
func newEnvConfig(t testing.TB, cfg Config) *env {
	t.Helper()
	ctx := context.Background()
	name, err := cluster.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, standInURL(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	db, err := NewPgConn(ctx, conn, Postgres)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, conn: conn, db: db, plan: mustPlan(t, cfg), seq: map[string]*big.Int{}}
	if err := Setup(ctx, db, e.plan, nil); err != nil {
		t.Fatal(err)
	}
	// Three shards; shard 1's numbers grow from one digit to three, so a
	// string comparison would get them wrong.
	e.seq["shardId-000000000000"], _ = new(big.Int).SetString("49590338271490256608559692538361571095921575989136588898", 10)
	e.seq["shardId-000000000001"] = big.NewInt(7)
	e.seq["shardId-000000000002"], _ = new(big.Int).SetString("49590338271490256608559692540925702759324208523137515618", 10)
	return e
}

var shards = []string{"shardId-000000000000", "shardId-000000000001", "shardId-000000000002"}

// land appends records to the landing table the way the streaming view
// gets them: each shard's records in the order given, with growing sequence
// numbers.
func (e *env) land(recs ...landed) {
	e.t.Helper()
	for _, r := range recs {
		seq := e.seq[r.shard]
		if _, err := e.conn.Exec(e.ctx, `INSERT INTO "_sluice"."hubert-redshift" VALUES (now(), $1, $2, $3, now(), $4::jsonb)`,
			r.partition, r.shard, seq.String(), string(r.data)); err != nil {
			e.t.Fatal(err)
		}
		seq.Add(seq, big.NewInt(1+int64(len(r.data)%3)))
	}
}

type landed struct {
	shard, partition string
	data             []byte
}

func (e *env) merge() {
	e.t.Helper()
	if err := Merge(e.ctx, e.db, e.plan); err != nil {
		e.t.Fatal(err)
	}
}

// dump returns the target table as text lines, sorted.
func (e *env) dump(sql string) []string {
	e.t.Helper()
	rows, err := e.db.Query(e.ctx, sql)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		parts := make([]string, len(r))
		for i, v := range r {
			parts[i] = "NULL"
			if v != nil {
				parts[i] = *v
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	sort.Strings(out)
	return out
}

func record(c change.Change) landed {
	key := c.Key()
	if key == nil { // truncate: any shard
		return landed{shard: shards[int(c.Pos.LSN)%3], partition: c.Table.ID().String(), data: change.AppendRecord(nil, &c, change.RecordMeta{Pipeline: "test", Database: "src", Emitted: time.Unix(1700000000, 0)})}
	}
	pk := c.Table.ID().String() + "/" + key[0].Text
	h := 0
	for _, b := range []byte(pk) {
		h = h*31 + int(b)
	}
	if h < 0 {
		h = -h
	}
	return landed{shard: shards[h%3], partition: pk, data: change.AppendRecord(nil, &c, change.RecordMeta{Pipeline: "test", Database: "src", Emitted: time.Unix(1700000000, 0)})}
}

func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n--- got ---\n%s\n--- want ---\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

const dumpCustomers = `SELECT "userid", "first_name", "last_name", "phone" FROM "public"."customers"`

func cust(t *change.Table, op change.Op, commit, lsn uint64, id int, first, last string, phone *string) change.Change {
	row := []change.Value{change.V(change.KindInt, fmt.Sprint(id)), change.V(change.KindText, first), change.V(change.KindText, last), change.Null}
	if phone != nil {
		row[3] = change.V(change.KindText, *phone)
	}
	c := change.Change{Op: op, Table: t, Pos: change.Position{CommitLSN: change.LSN(commit), LSN: change.LSN(lsn)}, TxID: uint32(commit), CommitTime: time.Unix(1700000000, 0)}
	switch op {
	case change.OpDelete:
		c.Before = []change.Value{row[0], change.Null, change.Null, change.Null}
	case change.OpTruncate:
	default:
		c.After = row
	}
	return c
}

func ptr(s string) *string { return &s }

// The seed tutorial's scenario, done right: latest change by LSN, deletes
// honoured, a re-run changes nothing.
func TestMergeSeedCustomers(t *testing.T) {
	tbl := customers()
	e := newEnv(t, tbl)
	e.land(
		record(cust(tbl, change.OpRead, 100, 0, 1, "Ada", "Lovelace", nil)),
		record(cust(tbl, change.OpInsert, 200, 150, 2, "Alan", "Turing", ptr("+44 1"))),
		record(cust(tbl, change.OpInsert, 300, 250, 3, "Grace", "Hopper", nil)),
		// Arrives before the insert it follows (later commit LSN first).
		record(cust(tbl, change.OpUpdate, 500, 450, 2, "Alan M.", "Turing", ptr("+44 2"))),
		record(cust(tbl, change.OpUpdate, 400, 350, 2, "Alan", "Turing", ptr("+44 9"))),
		record(cust(tbl, change.OpDelete, 600, 550, 3, "", "", nil)),
	)
	e.merge()
	want := []string{"1|Ada|Lovelace|NULL", "2|Alan M.|Turing|+44 2"}
	equalLines(t, "after the first merge", e.dump(dumpCustomers), want)
	e.merge()
	equalLines(t, "after re-running the merge", e.dump(dumpCustomers), want)
	// A late, older change of a deleted row does not bring it back; one of
	// an updated row does not undo the update.
	e.land(record(cust(tbl, change.OpUpdate, 350, 300, 3, "Grace", "H.", nil)),
		record(cust(tbl, change.OpUpdate, 450, 420, 2, "Old", "Value", nil)))
	e.merge()
	equalLines(t, "after late, older changes", e.dump(dumpCustomers), want)
	// Lost watermarks: the whole landing table is merged again, same result.
	if err := e.db.ExecTx(e.ctx, []string{`DELETE FROM "_sluice"."watermarks"`}); err != nil {
		t.Fatal(err)
	}
	e.merge()
	equalLines(t, "after replaying everything", e.dump(dumpCustomers), want)
}

func TestMergeTruncate(t *testing.T) {
	tbl := customers()
	e := newEnv(t, tbl)
	e.land(
		record(cust(tbl, change.OpInsert, 100, 90, 1, "a", "a", nil)),
		record(cust(tbl, change.OpInsert, 300, 290, 3, "c", "c", nil)), // after the truncate
		record(cust(tbl, change.OpTruncate, 200, 190, 0, "", "", nil)),
		record(cust(tbl, change.OpInsert, 150, 140, 2, "b", "b", nil)), // before it, landed after it
	)
	e.merge()
	equalLines(t, "truncate in the same run", e.dump(dumpCustomers), []string{"3|c|c|NULL"})
	e.land(record(cust(tbl, change.OpInsert, 400, 390, 4, "d", "d", nil)))
	e.merge()
	// A late truncate empties what is older than it only.
	e.land(record(cust(tbl, change.OpTruncate, 350, 340, 0, "", "", nil)),
		record(cust(tbl, change.OpInsert, 120, 110, 5, "e", "e", nil)))
	e.merge()
	equalLines(t, "late truncate", e.dump(dumpCustomers), []string{"4|d|d|NULL"})
}

// accounts has a TOAST-able note and one column of several record forms.
func accounts() *change.Table {
	return &change.Table{Schema: "app", Name: "accounts", Version: 1, Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "name", Type: change.Type{Name: "character varying(40)", Kind: change.KindText}},
		{Name: "note", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
		{Name: "payload", Type: change.Type{Name: "jsonb", Kind: change.KindJSON}, Nullable: true},
		{Name: "amount", Type: change.Type{Name: "numeric(12,2)", Kind: change.KindNumeric}, Nullable: true},
		{Name: "blob", Type: change.Type{Name: "bytea", Kind: change.KindBytes}, Nullable: true},
		{Name: "seen", Type: change.Type{Name: "timestamp with time zone", Kind: change.KindTimestampTZ}, Nullable: true},
	}}
}

const dumpAccounts = `SELECT "id", "name", "note", "payload"::text, "amount"::text, encode("blob", 'hex'), to_char("seen" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') FROM "app"."accounts"`

type acct struct {
	name, note, payload, amount, blob, seen *string
}

func (a acct) line(id int) string {
	s := func(p *string) string {
		if p == nil {
			return "NULL"
		}
		return *p
	}
	return fmt.Sprintf("%d|%s|%s|%s|%s|%s|%s", id, s(a.name), s(a.note), s(a.payload), s(a.amount), s(a.blob), s(a.seen))
}

// workload builds a random history of one table and the model of its final
// state, applying each change in source order (the order of positions).
type workload struct {
	rng     *rand.Rand
	tbl     *change.Table
	model   map[int]acct
	pos     uint64
	changes []change.Change
	// unchangedKeys[k] is true once some update of key k carried an unchanged note.
	unchangedKeys map[int]bool
	// chunk is the number of changes per merge run, when known: an update
	// that moves a key AND leaves the note unchanged is only generated when
	// the old key's previous change is in an earlier run (the documented limit).
	chunk int
	last  map[int]int // key -> index of its last change
}

func (w *workload) opt(p float64, v string) *string {
	if w.rng.Float64() < p {
		return nil
	}
	return &v
}

func (w *workload) randomRow() acct {
	note := strings.Repeat(fmt.Sprintf("note %d ", w.rng.IntN(1000)), 1+w.rng.IntN(40))
	blob := make([]byte, w.rng.IntN(12))
	for i := range blob {
		blob[i] = byte(w.rng.IntN(256))
	}
	return acct{
		name:    ptr(fmt.Sprintf("name-%d-ä", w.rng.IntN(10000))),
		note:    w.opt(0.2, note),
		payload: w.opt(0.3, fmt.Sprintf(`{"k": %d}`, w.rng.IntN(100))),
		amount:  w.opt(0.2, fmt.Sprintf("%d.%02d", w.rng.IntN(100000)-50000, w.rng.IntN(100))),
		blob:    w.opt(0.3, hex.EncodeToString(blob)),
		seen:    w.opt(0.3, time.Unix(1700000000+int64(w.rng.IntN(1e8)), int64(w.rng.IntN(1e6))*1000).UTC().Format("2006-01-02T15:04:05.000000")),
	}
}

func (w *workload) values(id int, a acct, noteUnchanged bool) []change.Value {
	v := func(k change.Kind, p *string) change.Value {
		if p == nil {
			return change.Null
		}
		return change.V(k, *p)
	}
	row := []change.Value{change.V(change.KindInt, fmt.Sprint(id)), v(change.KindText, a.name), v(change.KindText, a.note),
		v(change.KindJSON, a.payload), v(change.KindNumeric, a.amount), change.Null, change.Null}
	if a.blob != nil {
		b, _ := hex.DecodeString(*a.blob)
		row[5] = change.V(change.KindBytes, string(b))
	}
	if a.seen != nil {
		row[6] = change.V(change.KindTimestampTZ, *a.seen+"+00:00")
	}
	if noteUnchanged {
		row[2] = change.Unchanged
	}
	return row
}

func (w *workload) emit(c change.Change) {
	w.pos += 10
	c.Table, c.Pos = w.tbl, change.Position{CommitLSN: change.LSN(w.pos + 5), LSN: change.LSN(w.pos)}
	c.TxID, c.CommitTime = uint32(w.pos), time.Unix(1700000000, 0)
	w.changes = append(w.changes, c)
}

func (w *workload) step() {
	const keys = 25
	if w.rng.Float64() < 0.015 {
		w.emit(change.Change{Op: change.OpTruncate})
		w.model = map[int]acct{}
		return
	}
	id := 1 + w.rng.IntN(keys)
	cur, ok := w.model[id]
	if !ok {
		a := w.randomRow()
		op := change.OpInsert
		if len(w.changes) < 10 {
			op = change.OpRead
		}
		w.last[id] = len(w.changes)
		w.emit(change.Change{Op: op, After: w.values(id, a, false)})
		w.model[id] = a
		return
	}
	switch r := w.rng.Float64(); {
	case r < 0.15:
		before := make([]change.Value, len(w.tbl.Columns))
		before[0] = change.V(change.KindInt, fmt.Sprint(id))
		w.last[id] = len(w.changes)
		w.emit(change.Change{Op: change.OpDelete, Before: before})
		delete(w.model, id)
	case r < 0.25:
		to := 1 + w.rng.IntN(keys)
		if _, taken := w.model[to]; taken {
			return
		}
		a := w.randomRow()
		before := make([]change.Value, len(w.tbl.Columns))
		before[0] = change.V(change.KindInt, fmt.Sprint(id))
		n := len(w.changes)
		unchanged := w.chunk > 0 && w.rng.IntN(2) == 0 && w.last[id]/w.chunk < n/w.chunk
		if unchanged {
			a.note = cur.note
			w.unchangedKeys[id], w.unchangedKeys[to] = true, true
		}
		w.emit(change.Change{Op: change.OpUpdate, Before: before, After: w.values(to, a, unchanged)})
		delete(w.model, id)
		w.model[to] = a
		w.last[id], w.last[to] = n, n
	default:
		a := w.randomRow()
		unchanged := w.rng.Float64() < 0.4
		if unchanged {
			a.note = cur.note
			w.unchangedKeys[id] = true
		}
		w.last[id] = len(w.changes)
		w.emit(change.Change{Op: change.OpUpdate, After: w.values(id, a, unchanged)})
		w.model[id] = a
	}
}

func (w *workload) want() []string {
	var out []string
	for id, a := range w.model {
		out = append(out, a.line(id))
	}
	sort.Strings(out)
	return out
}

// A random history of inserts, updates, key changes, deletes, truncates
// and unchanged TOAST values, landed out of order, with duplicates, merged
// in several runs that are each run twice: the table equals the model.
func TestMergeRandomWorkload(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			e := newEnv(t, accounts())
			const total, runs = 500, 8
			per := (total + runs - 1) / runs
			w := &workload{rng: rand.New(rand.NewPCG(seed, 99)), tbl: accounts(), model: map[int]acct{}, unchangedKeys: map[int]bool{}, chunk: per, last: map[int]int{}}
			for len(w.changes) < total {
				w.step()
			}
			moves, unch := 0, 0
			for _, c := range w.changes {
				if c.Op == change.OpUpdate && len(c.After) > 2 && c.After[2].Kind == change.KindUnchanged {
					unch++
					if c.Before != nil {
						moves++
					}
				}
			}
			t.Logf("%d changes: %d updates with an unchanged note, %d of them moving the key", len(w.changes), unch, moves)
			// Records of keys that never see an unchanged TOAST value may be
			// held back to a later run: a late record must lose to what was
			// merged after it. (An update with an unchanged value whose row
			// arrives in a LATER run cannot be resolved: see docs.)
			mayDelay := func(c change.Change) bool {
				for _, vals := range [][]change.Value{c.Before, c.After} {
					if len(vals) > 0 && w.unchangedKeys[atoi(vals[0].Text)] {
						return false
					}
				}
				return true
			}
			var held []change.Change
			var landedSoFar []landed
			for run := 0; run < runs; run++ {
				batch := append([]change.Change{}, held...)
				held = nil
				end := min((run+1)*per, len(w.changes))
				for _, c := range w.changes[run*per : end] {
					if run < runs-1 && mayDelay(c) && w.rng.Float64() < 0.1 {
						held = append(held, c)
						continue
					}
					batch = append(batch, c)
				}
				// Arrival order is not source order.
				w.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
				var recs []landed
				for _, c := range batch {
					recs = append(recs, record(c))
				}
				// The producer retried some earlier puts: duplicates.
				for i := 0; i < 5 && len(landedSoFar) > 0; i++ {
					recs = append(recs, landedSoFar[w.rng.IntN(len(landedSoFar))])
				}
				e.land(recs...)
				landedSoFar = append(landedSoFar, recs...)
				e.merge()
				first := e.dump(dumpAccounts)
				e.merge()
				equalLines(t, fmt.Sprintf("run %d merged twice", run), e.dump(dumpAccounts), first)
			}
			equalLines(t, "final table", e.dump(dumpAccounts), w.want())
			// Everything replayed from the start (watermarks lost): no change.
			if err := e.db.ExecTx(e.ctx, []string{`DELETE FROM "_sluice"."watermarks"`}); err != nil {
				t.Fatal(err)
			}
			e.merge()
			equalLines(t, "after a full replay", e.dump(dumpAccounts), w.want())
		})
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 99)) }

func itoa(n int) string { return fmt.Sprint(n) }

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

func TestPendingAndSchedule(t *testing.T) {
	tbl := customers()
	e := newEnv(t, tbl)
	e.land(record(cust(tbl, change.OpInsert, 100, 90, 1, "a", "a", nil)),
		record(cust(tbl, change.OpInsert, 200, 190, 2, "b", "b", nil)))
	n, err := Pending(e.ctx, e.db, e.plan)
	if err != nil {
		t.Fatal(err)
	}
	if got := n[tbl.ID()]; got != 2 {
		t.Fatalf("pending before the merge = %d, want 2", got)
	}
	// The scheduler gets its own connection: pgx closes a connection whose
	// query is cancelled, as the scheduler's is when it stops.
	conn, err := pgx.Connect(e.ctx, e.conn.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(e.ctx)
	sdb, err := NewPgConn(e.ctx, conn, Postgres)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	var runs []MergeRun
	ran := func(_ context.Context, r MergeRun) { runs = append(runs, r) }
	if err := Schedule(ctx, sdb, e.plan, ScheduleOptions{Every: 50 * time.Millisecond, Ran: ran}); err != context.DeadlineExceeded {
		t.Fatalf("schedule ended with %v, want the context's deadline", err)
	}
	if len(runs) == 0 || runs[0].Err != nil {
		t.Fatalf("runs %+v, want a successful first run", runs)
	}
	if n, err = Pending(e.ctx, e.db, e.plan); err != nil || n[tbl.ID()] != 0 {
		t.Fatalf("pending after scheduled merges = %v (%v), want 0", n, err)
	}
	equalLines(t, "after scheduled merges", e.dump(dumpCustomers), []string{"1|a|a|NULL", "2|b|b|NULL"})
}

// Unchanged TOAST values across deletes and key changes: the value comes
// from the row's own history since it last restarted (a delete, or a key
// change that moved another row here), or from the moved row's stored
// value, never from an earlier life of the key.
func TestMergeUnchangedAcrossKeyChanges(t *testing.T) {
	tbl := accounts()
	e := newEnv(t, tbl)
	w := &workload{tbl: tbl}
	pos := uint64(100)
	mk := func(op change.Op, before, after int, note string, unchanged bool) landed {
		pos += 10
		c := change.Change{Op: op, Table: tbl, Pos: change.Position{CommitLSN: change.LSN(pos + 5), LSN: change.LSN(pos)}, CommitTime: time.Unix(1700000000, 0)}
		if before != 0 {
			c.Before = make([]change.Value, len(tbl.Columns))
			c.Before[0] = change.V(change.KindInt, itoa(before))
		}
		if after != 0 {
			c.After = w.values(after, acct{name: ptr("n" + itoa(after)), note: ptr(note)}, unchanged)
		}
		return record(c)
	}
	dump := `SELECT "id", "note" FROM "app"."accounts"`
	e.land(mk(change.OpInsert, 0, 1, "one", false), mk(change.OpInsert, 0, 6, "six", false))
	e.merge()
	e.land(mk(change.OpUpdate, 1, 2, "", true)) // key 1 becomes 2, note not sent
	e.merge()
	equalLines(t, "moved with an unchanged note", e.dump(dump), []string{"2|one", "6|six"})
	// Key 5 lives and dies in this run; then row 6 moves to 5, note not sent.
	e.land(mk(change.OpInsert, 0, 5, "five", false), mk(change.OpDelete, 5, 0, "", false), mk(change.OpUpdate, 6, 5, "", true))
	e.merge()
	equalLines(t, "moved onto a key deleted in the same run", e.dump(dump), []string{"2|one", "5|six"})
	e.land(mk(change.OpUpdate, 0, 5, "", true))
	stale := pos
	e.merge()
	equalLines(t, "unchanged after the move", e.dump(dump), []string{"2|one", "5|six"})
	// A late, stale delete of key 5 lands together with a newer update that
	// leaves the note unchanged: the stored note stays.
	pos = 50
	late := mk(change.OpDelete, 5, 0, "", false)
	pos = stale
	e.land(late, mk(change.OpUpdate, 0, 5, "", true))
	e.merge()
	equalLines(t, "stale delete and an unchanged update", e.dump(dump), []string{"2|one", "5|six"})
}

// A composite, mixed-case key through inserts, a key change in one column,
// deletes and a late older change, into a target schema of its own.
func TestMergeCompositeKey(t *testing.T) {
	tbl := &change.Table{Schema: "inv", Name: "Stock", Version: 1, Key: []int{0, 1}, Columns: []change.Column{
		{Name: "Site", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "sku", Type: change.Type{Name: "text", Kind: change.KindText}, Key: true},
		{Name: "qty", Type: change.Type{Name: "bigint", Kind: change.KindInt}, Nullable: true},
	}}
	ctx := context.Background()
	name, err := cluster.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, standInURL(name))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cfg := seedConfig(Postgres, tbl)
	cfg.TargetSchema = "mirror"
	e := &env{t: t, ctx: ctx, conn: conn, plan: mustPlan(t, cfg), seq: map[string]*big.Int{}}
	if e.db, err = NewPgConn(ctx, conn, Postgres); err != nil {
		t.Fatal(err)
	}
	if err := Setup(ctx, e.db, e.plan, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		e.seq[s] = big.NewInt(1)
	}
	row := func(site int, sku string, qty int) []change.Value {
		return []change.Value{change.V(change.KindInt, itoa(site)), change.V(change.KindText, sku), change.V(change.KindInt, itoa(qty))}
	}
	pos := uint64(0)
	ch := func(op change.Op, before, after []change.Value) landed {
		pos += 10
		return record(change.Change{Op: op, Table: tbl, Before: before, After: after, Pos: change.Position{CommitLSN: change.LSN(pos), LSN: change.LSN(pos - 1)}, CommitTime: time.Unix(1700000000, 0)})
	}
	dump := `SELECT "Site", "sku", "qty" FROM "mirror"."Stock"`
	older := ch(change.OpUpdate, nil, row(1, "a", 999))
	e.land(ch(change.OpInsert, nil, row(1, "a", 5)), ch(change.OpInsert, nil, row(1, "b", 6)), ch(change.OpInsert, nil, row(2, "a", 7)))
	e.merge()
	e.land(ch(change.OpUpdate, row(1, "b", 0), row(1, "c", 8)), ch(change.OpDelete, row(2, "a", 0), nil))
	e.merge()
	equalLines(t, "after a key change and a delete", e.dump(dump), []string{"1|a|5", "1|c|8"})
	e.land(older, ch(change.OpInsert, nil, row(2, "a", 9)))
	e.merge()
	equalLines(t, "after a late older update and a re-insert", e.dump(dump), []string{"1|a|5", "1|c|8", "2|a|9"})
}
