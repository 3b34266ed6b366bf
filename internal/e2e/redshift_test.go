package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// snapshotThroughRedshift puts the initial rows in the source before the
// first run, so they reach Redshift through the snapshot, and kills may hit
// the snapshot. Every snapshot through Kinesis is preceded by a reset
// marker, a truncate record at the snapshot rows' own position (commit LSN
// P, LSN 0); the merge keeps rows at that position (it once dropped them).
const snapshotThroughRedshift = true

const (
	testRoleARN  = "arn:aws:iam::123456789012:role/sluice-redshift-streaming"
	seedCustomer = `CREATE TABLE customers (userid int PRIMARY KEY, first_name varchar(63) NOT NULL, last_name varchar(63) NOT NULL, phone varchar(63))`
)

// `sluice plan` for the seed tutorial's customers table, with no Redshift
// reachable: the policies, the external schema with the IAM role, the
// streaming view, the DDL and the merge, everything marked to be created.
func TestRedshiftPlan(t *testing.T) {
	e := newEnv(t, "")
	e.exec(seedCustomer)
	cfg := filepath.Join(e.dir, "redshift.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.customers]
target: redshift://sluice:topsecret@127.0.0.1:1/dev
state_dir: %q
stream:
  kinesis: {stream: hubert-redshift, region: us-east-1}
redshift:
  role_arn: %s
  account: "123456789012"
`, e.name, e.src, filepath.Join(e.dir, "state"), testRoleARN))
	out, code := e.sluice("plan", "--config", cfg)
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	const streamARN = "arn:aws:kinesis:us-east-1:123456789012:stream/hubert-redshift"
	for _, want := range []string{
		"Could not inspect Redshift", "127.0.0.1:1",
		`+ external schema "sluice_kinesis"`,
		`+ materialized view "_sluice"."hubert-redshift"`,
		`+ table "public"."customers"`,
		"-- IAM trust policy of " + testRoleARN,
		`"Service": "redshift.amazonaws.com"`,
		`"sts:AssumeRole"`,
		"-- IAM permission policy of " + testRoleARN,
		"CREATE EXTERNAL SCHEMA \"sluice_kinesis\"\nFROM KINESIS\nREGION 'us-east-1'\nIAM_ROLE '" + testRoleARN + "';",
		"CREATE MATERIALIZED VIEW \"_sluice\".\"hubert-redshift\"\nAUTO REFRESH YES\nAS",
		`FROM "sluice_kinesis"."hubert-redshift"`,
		"CREATE TABLE \"public\".\"customers\" (\n  \"userid\" INTEGER NOT NULL,\n  \"first_name\" VARCHAR(252) NOT NULL,",
		"DISTKEY(\"userid\")",
		"-- Merge of public.customers into \"public\".\"customers\", every 1m0s, in one transaction:",
		`INSERT INTO "public"."customers" ("userid", "first_name", "last_name", "phone", "_sluice_commit_lsn", "_sluice_lsn")`,
		`DELETE FROM "_sluice"."watermarks"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	// The permission policy names the one stream and nothing else but the
	// name listing that IAM cannot scope.
	pol := section(out, "-- IAM permission policy of ")
	if n := strings.Count(pol, "arn:aws:kinesis:"); n != 1 || !strings.Contains(pol, `"`+streamARN+`"`) {
		t.Errorf("permission policy should name exactly %s:\n%s", streamARN, pol)
	}
	if strings.Contains(out, "topsecret") {
		t.Errorf("the password reached the output:\n%s", out)
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("plan output:\n%s", out)
	}
}

// `sluice plan` with views: each view's output table is planned (DDL from
// the view's output types, its merge), a table with mirror: false is not.
func TestRedshiftPlanViews(t *testing.T) {
	e := newEnv(t, "")
	e.exec(seedCustomer + `;
CREATE TABLE orders (order_id int PRIMARY KEY, userid int NOT NULL, amount numeric(10,2) NOT NULL, status text NOT NULL)`)
	cfg := filepath.Join(e.dir, "redshift.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.customers, {name: public.orders, mirror: false}]
views:
  - name: order_facts
    sql: |
      SELECT o.order_id, o.amount, upper(c.last_name) AS customer
      FROM public.orders o LEFT JOIN public.customers c ON c.userid = o.userid
      WHERE o.status <> 'cancelled'
  - name: customer_totals
    sql: SELECT o.userid, count(*) AS orders, sum(o.amount) AS spent FROM public.orders o GROUP BY o.userid
target: redshift://sluice:topsecret@127.0.0.1:1/dev
state_dir: %q
stream:
  kinesis: {stream: hubert-redshift, region: us-east-1}
redshift:
  role_arn: %s
  account: "123456789012"
`, e.name, e.src, filepath.Join(e.dir, "state"), testRoleARN))
	out, code := e.sluice("plan", "--config", cfg)
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		`+ table "public"."customers"`,
		`+ table "public"."order_facts"`,
		`+ table "public"."customer_totals"`,
		"CREATE TABLE \"public\".\"order_facts\" (\n  \"order_id\" INTEGER NOT NULL,\n  \"amount\" DECIMAL(10,2),\n  \"customer\" VARCHAR",
		"CREATE TABLE \"public\".\"customer_totals\" (\n  \"userid\" INTEGER NOT NULL,\n  \"orders\" BIGINT,\n  \"spent\" DECIMAL(38,2)",
		"-- Merge of public.order_facts into \"public\".\"order_facts\"",
		"-- Merge of public.customer_totals into \"public\".\"customer_totals\"",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	if strings.Contains(out, `"public"."orders"`) {
		t.Errorf("plan has the table that only feeds views:\n%s", out)
	}
	if t.Failed() {
		t.Logf("plan output:\n%s", out)
	}
}

// section returns the text from the line starting with head to the next blank line.
func section(out, head string) string {
	i := strings.Index(out, head)
	if i < 0 {
		return ""
	}
	s := out[i:]
	if j := strings.Index(s, "\n\n"); j >= 0 {
		s = s[:j]
	}
	return s
}

func TestRedshiftBadConfig(t *testing.T) {
	e := newEnv(t, "")
	e.exec(seedCustomer)
	write := func(name, body string) string {
		path := filepath.Join(e.dir, name+".yaml")
		writeFile(t, path, fmt.Sprintf("pipeline: %s\nsource: {url: %q}\ntables: [public.customers]\nstate_dir: %q\n",
			e.name, e.src, filepath.Join(e.dir, "state"))+body)
		return path
	}
	const stream = "stream:\n  kinesis: {stream: hubert-redshift, region: us-east-1}\n"
	cases := []struct {
		name, body, want string
	}{
		{"no role", "target: redshift://u:p@h/dev\n" + stream + "redshift: {account: \"123456789012\"}\n",
			"redshift.role_arn is empty: set the ARN of the IAM role Redshift assumes"},
		{"no redshift section", "target: redshift://u:p@h/dev\n" + stream,
			"redshift.role_arn is empty"},
		{"stream ARN as role", "target: redshift://u:p@h/dev\n" + stream +
			"redshift: {account: \"123456789012\", role_arn: \"arn:aws:kinesis:us-east-1:123456789012:stream/hubert-redshift\"}\n",
			"is a Kinesis stream ARN: set the ARN of the IAM role Redshift assumes"},
		{"no stream", "target: redshift://u:p@h/dev\nredshift: {account: \"123456789012\", role_arn: " + testRoleARN + "}\n",
			"a Redshift target needs a Kinesis stream (Redshift reads the changes from it natively): add stream:"},
		{"no account", "target: redshift://u:p@h/dev\n" + stream + "redshift: {role_arn: " + testRoleARN + "}\n",
			"redshift.account is empty: set the 12-digit AWS account that owns the stream, or give stream.kinesis.stream as the stream's ARN"},
		{"no database", "target: redshift://u:p@h\n" + stream + "redshift: {account: \"123456789012\", role_arn: " + testRoleARN + "}\n",
			"want redshift://user:password@host:5439/database"},
		{"data api half", "target: \"redshift:\"\n" + stream + "redshift: {account: \"123456789012\", role_arn: " + testRoleARN + ", data_api: {database: dev}}\n",
			"redshift.data_api: set exactly one of cluster_identifier (provisioned) and workgroup_name (serverless)"},
		{"merge role elsewhere", "target: duckdb:x.duckdb\nstream:\n  role: merge\n  kinesis: {stream: s, region: us-east-1}\n",
			"stream.role merge runs the Redshift merge schedule"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := e.sluice("validate", "--config", write(strings.ReplaceAll(tc.name, " ", "_"), tc.body))
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want 2 and %q in:\n%s", code, tc.want, out)
			}
		})
	}
	// The stream's ARN supplies the account and region.
	out, code := e.sluice("validate", "--config", write("arn", "target: redshift://u:p@h/dev\nstream:\n  kinesis: {stream: \"arn:aws:kinesis:eu-west-1:123456789012:stream/s\"}\nredshift: {role_arn: "+testRoleARN+"}\n"))
	if code != 0 {
		t.Errorf("a stream ARN should stand for account and region: exit %d\n%s", code, out)
	}
	// An unreachable Redshift: setup says where and what to check, without the password.
	cfg := write("unreachable", "target: redshift://sluice:topsecret@127.0.0.1:1/dev\n"+stream+
		"redshift: {account: \"123456789012\", role_arn: "+testRoleARN+"}\n")
	out, code = e.sluice("setup", "--config", cfg)
	if code != 2 || !strings.Contains(out, "connect to Redshift at 127.0.0.1:1") || !strings.Contains(out, "security group") {
		t.Errorf("setup against an unreachable Redshift: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "topsecret") {
		t.Errorf("the password reached the output:\n%s", out)
	}
}

// Postgres -> sluice (producer + merge schedule) -> kinesalite -> (the
// streaming view, played by this test) -> landing table -> merge, against
// the Postgres stand-in for Redshift, with kill -9 of sluice while a random
// workload runs. At the end verify passes and a second merge changes nothing.
func TestRedshiftEndToEndWithKills(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	const stream = "changes"
	if err := k.CreateStream(ctx, stream, 3); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "")
	const rows = 2000
	// ledger has no key (REPLICA IDENTITY FULL): a multiset of few distinct
	// values, so identical rows abound, NULLs in every column included.
	e.exec(seedCustomer + `;
CREATE TABLE notes (account int, seq int, body text, PRIMARY KEY (account, seq));
CREATE TABLE ledger (account int, delta int, note text);
ALTER TABLE ledger REPLICA IDENTITY FULL;`)
	initialRows := func() {
		e.exec(fmt.Sprintf(`
INSERT INTO customers SELECT i, 'first ' || i, 'last ' || i, CASE WHEN i %% 3 = 0 THEN NULL ELSE '555-' || i END FROM generate_series(1, %d) i;
INSERT INTO notes SELECT i %% 100, i, repeat('x', i %% 50) FROM generate_series(1, %d) i;
INSERT INTO ledger SELECT i %% 5, i %% 3, CASE WHEN i %% 4 = 0 THEN NULL ELSE 'n' END FROM generate_series(1, 300) i;
INSERT INTO ledger VALUES (NULL, NULL, NULL), (NULL, NULL, NULL);`, rows, rows))
	}
	if snapshotThroughRedshift {
		initialRows()
	}
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
views:
  - name: account_notes
    sql: |
      SELECT n.account, count(*) AS notes, max(c.last_name) AS last_name
      FROM public.notes n LEFT JOIN public.customers c ON c.userid = n.account
      GROUP BY n.account
target: %q
state_dir: %q
snapshot: {chunk_rows: 500}
batch: {max_changes: 500, interval: 50ms}
stream:
  kinesis: {stream: %s, endpoint: %q, region: %s}
redshift:
  role_arn: %s
  account: %q
  merge_interval: 300ms
  dialect: postgres
`, e.name, e.src, strings.Replace(dst, "postgres://", "redshift://", 1), filepath.Join(e.dir, "state"),
		stream, k.Endpoint, k.Region, testRoleARN, k.Account))

	out, code := e.sluice("run", "--config", cfg)
	if code != 2 || !strings.Contains(out, "run `sluice setup` with this config first") {
		t.Errorf("run before setup: exit %d\n%s", code, out)
	}
	out, code = e.sluice("setup", "--config", cfg)
	if code != 0 || !strings.Contains(out, `created table "_sluice"."changes"`) {
		t.Fatalf("setup: exit %d\n%s", code, out)
	}
	out, code = e.sluice("setup", "--config", cfg)
	if code != 0 || !strings.Contains(out, ": 0 created") {
		t.Fatalf("second setup: exit %d\n%s", code, out)
	}
	out, code = e.sluice("plan", "--config", cfg)
	if code != 0 || !strings.Contains(out, `= table "public"."customers"`) || !strings.Contains(out, "Plan: 0 to create") {
		t.Fatalf("plan after setup: exit %d\n%s", code, out)
	}

	// The streaming view's job: read every shard and land each record.
	landing, err := pgx.Connect(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer landing.Close(ctx)
	ref := &testenv.StreamingView{Client: k.Client(), Stream: stream, Table: `"_sluice"."changes"`}
	refresh := startRefreshing(ctx, ref, landing)
	defer refresh.stop()

	wctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	werr := make(chan error, 1)
	startWork := func() { go func() { werr <- runCustomerWorkload(wctx, e.src, 7, rows) }() }
	if snapshotThroughRedshift {
		startWork()
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 2; i++ {
		p := e.start("run", "--config", cfg)
		e.waitRunning(p)
		if i == 0 && !snapshotThroughRedshift {
			// The (empty) snapshot reaches the stream before any kill,
			// so no snapshot is ever redone; every row comes as a change.
			waitSnapshotted(t, e, cfg, p)
			initialRows()
			startWork()
		}
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

	out, code = e.sluice("status", "--config", cfg)
	if code != 0 || !strings.Contains(out, `"pending_records"`) || !strings.Contains(out, `"last_merge"`) || !strings.Contains(out, `"public.customers"`) {
		t.Errorf("status while running: exit %d\n%s", code, out)
	} else if testing.Verbose() {
		t.Logf("status:\n%s", out)
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		out, code = e.sluice("verify", "--config", cfg)
		if code == 0 {
			t.Logf("verify after the kills:\n%s", out)
			if !strings.Contains(out, "public.account_notes") {
				t.Errorf("verify did not compare the view:\n%s", out)
			}
			break
		}
		if err := refresh.Failed(); err != nil {
			t.Fatalf("refresh the landing table (the streaming view's stand-in): %v", err)
		}
		if time.Now().After(deadline) {
			debugRedshift(t, landing, out)
			t.Fatalf("verify never passed (exit %d):\n%s\nsluice:\n%s", code, out, p.out.String())
		}
		time.Sleep(time.Second)
	}
	p.stop(t)
	refresh.Stop(t)
	if _, err := ref.Refresh(ctx, landing); err != nil { // anything put after the last refresh
		t.Fatal(err)
	}
	out, code = e.sluice("merge", "--config", cfg)
	if code != 0 {
		t.Fatalf("merge: exit %d\n%s", code, out)
	}
	out, code = e.sluice("verify", "--config", cfg)
	if code != 0 {
		t.Fatalf("verify after the last merge: exit %d\n%s", code, out)
	}

	// A second merge with nothing new changes nothing: rows, their
	// positions, delete markers and watermarks.
	before := dumpMirror(t, landing)
	out, code = e.sluice("merge", "--config", cfg)
	if code != 0 || !strings.Contains(out, "public.customers: 0 records") || !strings.Contains(out, "public.notes: 0 records") || !strings.Contains(out, "public.ledger: 0 records") || !strings.Contains(out, "public.account_notes: 0 records") {
		t.Fatalf("second merge: exit %d\n%s", code, out)
	}
	if after := dumpMirror(t, landing); after != before {
		t.Errorf("the second merge changed the mirror")
	}
	if n := strings.Count(before, "\n"); n < rows {
		t.Errorf("mirror dump has %d lines, want at least %d", n, rows)
	}
	// Independent of verify: the keyless table, row for row, counted.
	srcLedger, dstLedger := ledgerRows(t, e.src), ledgerRows(t, dst)
	if srcLedger != dstLedger {
		t.Errorf("ledger differs:\nsource %s\nmirror %s", srcLedger, dstLedger)
	}

	out, code = e.sluice("teardown", "--config", cfg)
	if code != 0 || !strings.Contains(out, `removed redshift table "_sluice"."changes"`) || !strings.Contains(out, "mirrored tables in Redshift are kept") {
		t.Errorf("teardown: exit %d\n%s", code, out)
	}
	var n int
	if err := landing.QueryRow(ctx, `SELECT count(*) FROM public.customers`).Scan(&n); err != nil || n == 0 {
		t.Errorf("the mirrored table should survive teardown: %d rows, %v", n, err)
	}
	out, code = e.sluice("teardown", "--config", cfg)
	if code != 0 || !strings.Contains(out, "nothing to remove in Redshift") {
		t.Errorf("second teardown: exit %d\n%s", code, out)
	}
}

// debugRedshift logs, for the first keys verify reports missing, their
// records in the landing table, and the truncation floors.
func debugRedshift(t *testing.T, conn *pgx.Conn, out string) {
	i := strings.Index(out, "missing in target: ")
	if i < 0 {
		return
	}
	line := out[i+len("missing in target: "):]
	line = line[:strings.Index(line, "\n")]
	keys := strings.Split(line, ", ")
	for _, k := range keys[:min(3, len(keys))] {
		k = strings.Trim(k, "()")
		rows, err := conn.Query(context.Background(), `SELECT shard_id, sequence_number, data->>'op', data->'source'->>'commit_lsn', data->'source'->>'lsn', data->'before'->>'userid', data->'after'->>'userid', data->'source'->>'snapshot' FROM "_sluice"."changes" WHERE data->'source'->>'table' = 'customers' AND (data->'before'->>'userid' = $1 OR data->'after'->>'userid' = $1 OR data->>'op' = 't') ORDER BY shard_id, length(sequence_number), sequence_number`, k)
		if err != nil {
			t.Log(err)
			return
		}
		for rows.Next() {
			v, _ := rows.Values()
			t.Log(k, v)
		}
		rows.Close()
	}
	rows, _ := conn.Query(context.Background(), `SELECT * FROM "_sluice"."truncations"`)
	for rows.Next() {
		v, _ := rows.Values()
		t.Log("truncation", v)
	}
	rows.Close()
}

// waitSnapshotted waits until the running sluice reports every table's
// snapshot as put on the stream.
func waitSnapshotted(t *testing.T, e *env, cfg string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := e.sluice("status", "--config", cfg, "--json")
		var st struct {
			Stats *struct {
				Tables map[string]struct {
					Snapshotted bool `json:"snapshotted"`
				} `json:"tables"`
			} `json:"stats"`
		}
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Stats != nil && len(st.Stats.Tables) >= 3 {
			done := true
			for _, tb := range st.Stats.Tables {
				done = done && tb.Snapshotted
			}
			if done {
				return
			}
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("the snapshot did not finish:\n%s\nsluice:\n%s", out, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dumpMirror is the stand-in's mirrored tables and bookkeeping, as text.
func dumpMirror(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT * FROM public.customers ORDER BY userid`,
		`SELECT * FROM public.notes ORDER BY account, seq`,
		`SELECT * FROM "_sluice"."public.customers.deleted" ORDER BY 1`,
		`SELECT * FROM "_sluice"."public.notes.deleted" ORDER BY 1, 2`,
		`SELECT * FROM public.ledger ORDER BY 1, 2, 3, 4, 5`,
		`SELECT * FROM "_sluice"."public.ledger.applied" ORDER BY 1, 2, 3`,
		`SELECT table_name, shard_id, sequence_number FROM "_sluice"."watermarks" ORDER BY 1, 2`,
		`SELECT table_name, commit_lsn, lsn FROM "_sluice"."truncations" ORDER BY 1`,
	} {
		rows, err := conn.Query(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, vals...)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// ledgerRows is the keyless ledger as one text: each distinct row with its count.
func ledgerRows(t *testing.T, url string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var out string
	if err := conn.QueryRow(context.Background(), `SELECT coalesce(string_agg(r, ' ' ORDER BY r), '') FROM (
  SELECT coalesce(account::text, '~') || '|' || coalesce(delta::text, '~') || '|' || coalesce(note, '~') || 'x' || count(*) AS r
  FROM public.ledger GROUP BY account, delta, note) x`).Scan(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// runCustomerWorkload makes random transactions on customers, notes and
// ledger until ctx ends: inserts, updates, key changes, deletes, a delete
// and re-insert of one key, upserts, one of several identical ledger rows
// deleted or updated, and, now and then, a truncate.
func runCustomerWorkload(ctx context.Context, src string, seed uint64, rows int) error {
	conn, err := pgx.Connect(ctx, src)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rng := rand.New(rand.NewPCG(seed, seed))
	next := rows + 1
	for ctx.Err() == nil {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		for j, size := 0, 1+rng.IntN(15); j < size; j++ {
			id := 1 + rng.IntN(next)
			var q string
			var args []any
			switch p := rng.IntN(120); {
			case p < 30:
				q, args = `INSERT INTO customers VALUES ($1, $2, 'new', NULL) ON CONFLICT (userid) DO NOTHING`, []any{next, fmt.Sprintf("f%d", next)}
				next++
			case p < 60:
				q, args = `UPDATE customers SET phone = $2, last_name = last_name || '.' WHERE userid = $1`, []any{id, fmt.Sprintf("555-%d", rng.IntN(1e6))}
			case p < 66:
				q, args = `UPDATE customers SET userid = $2 WHERE userid = $1`, []any{id, next}
				next++
			case p < 76:
				q, args = `DELETE FROM customers WHERE userid = $1`, []any{id}
			case p < 80:
				q, args = `WITH d AS (DELETE FROM customers WHERE userid = $1 RETURNING *) INSERT INTO customers SELECT userid, first_name || ' again', last_name, phone FROM d`, []any{id}
			case p < 95:
				q, args = `INSERT INTO notes VALUES ($1, $2, $3) ON CONFLICT (account, seq) DO UPDATE SET body = excluded.body`, []any{id % 100, rng.IntN(5000), fmt.Sprintf("note %d", rng.IntN(1e6))}
			case p < 100:
				q, args = `DELETE FROM notes WHERE account = $1`, []any{id % 100}
			case p < 108:
				q, args = `INSERT INTO ledger VALUES (NULLIF($1::int % 6, 5), $2::int % 3, CASE WHEN $2::int % 4 = 0 THEN NULL ELSE 'n' END)`, []any{id, rng.IntN(12)}
			case p < 114:
				q, args = `DELETE FROM ledger WHERE ctid = (SELECT ctid FROM ledger WHERE account IS NOT DISTINCT FROM NULLIF($1::int % 6, 5) LIMIT 1)`, []any{id}
			default:
				q, args = `UPDATE ledger SET delta = (coalesce(delta, 0) + 1) % 3 WHERE ctid = (SELECT ctid FROM ledger WHERE account IS NOT DISTINCT FROM NULLIF($1::int % 6, 5) LIMIT 1)`, []any{id}
			}
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				_ = tx.Rollback(context.Background())
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		if rng.IntN(150) == 0 {
			truncate := `TRUNCATE notes`
			if rng.IntN(3) == 0 {
				truncate = `TRUNCATE ledger`
			}
			if _, err := tx.Exec(ctx, truncate); err != nil {
				_ = tx.Rollback(context.Background())
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
	}
	return nil
}

// A source schema change reaches Redshift through the whole chain: sluice
// (producer and merge schedule) -> kinesalite -> the streaming view's
// stand-in -> the merge, which adds a column added at the source and drops
// one dropped there; verify passes after each.
func TestRedshiftSchemaChange(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	const stream = "schema"
	if err := k.CreateStream(ctx, stream, 2); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "")
	e.exec(seedCustomer + `;
INSERT INTO customers SELECT i, 'first ' || i, 'last ' || i, '555-' || i FROM generate_series(1, 200) i;`)
	dstDB, err := pg.CreateDatabase(ctx, "dst_"+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	dst := pg.URL(dstDB)
	cfg := filepath.Join(e.dir, "redshift.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.customers]
target: %q
state_dir: %q
batch: {interval: 50ms}
stream:
  kinesis: {stream: %s, endpoint: %q, region: %s}
redshift:
  role_arn: %s
  account: %q
  merge_interval: 300ms
  dialect: postgres
`, e.name, e.src, strings.Replace(dst, "postgres://", "redshift://", 1), filepath.Join(e.dir, "state"),
		stream, k.Endpoint, k.Region, testRoleARN, k.Account))
	if out, code := e.sluice("setup", "--config", cfg); code != 0 {
		t.Fatalf("setup: exit %d\n%s", code, out)
	}
	landing, err := pgx.Connect(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer landing.Close(ctx)
	// The streaming view is named after the stream.
	ref := &testenv.StreamingView{Client: k.Client(), Stream: stream, Table: `"_sluice"."` + stream + `"`}
	refresh := startRefreshing(ctx, ref, landing)
	defer refresh.stop()
	p := e.start("run", "--config", cfg)
	e.waitRunning(p)
	verified := func(when string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			out, code := e.sluice("verify", "--config", cfg)
			if code == 0 {
				return
			}
			if time.Now().After(deadline) || p.exited() {
				t.Fatalf("%s: verify never passed (exit %d):\n%s\nsluice:\n%s", when, code, out, p.out.String())
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	columns := func() string {
		t.Helper()
		var cols string
		if err := landing.QueryRow(ctx, `SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns
			WHERE table_schema = 'public' AND table_name = 'customers' AND column_name NOT LIKE '\_sluice%'`).Scan(&cols); err != nil {
			t.Fatal(err)
		}
		return cols
	}
	verified("after the snapshot")
	e.exec(`ALTER TABLE customers ADD COLUMN email text;
UPDATE customers SET email = 'c' || userid || '@example.com' WHERE userid % 2 = 0;
INSERT INTO customers VALUES (1000, 'new', 'customer', NULL, 'new@example.com');`)
	verified("after ADD COLUMN")
	if got := columns(); got != "userid,first_name,last_name,phone,email" {
		t.Errorf("after ADD COLUMN the Redshift table has columns %s", got)
	}
	e.exec(`ALTER TABLE customers DROP COLUMN phone;
UPDATE customers SET last_name = last_name || '!' WHERE userid % 3 = 0;
DELETE FROM customers WHERE userid % 5 = 0;`)
	verified("after DROP COLUMN")
	if got := columns(); got != "userid,first_name,last_name,email" {
		t.Errorf("after DROP COLUMN the Redshift table has columns %s", got)
	}
	p.stop(t)
	refresh.Stop(t)
}
