package postgres

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/testenv"
)

func wantErr(t *testing.T, err error, sentinel error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", parts)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("error %q does not wrap %v", err, sentinel)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

func withUser(raw, user string) string {
	u, _ := url.Parse(raw)
	u.User = url.User(user)
	return u.String()
}

func TestConfigErrors(t *testing.T) {
	_, err := New(Config{})
	wantErr(t, err, nil, "source URL is empty", "pipeline name is empty", "no tables to mirror")
	_, err = New(Config{URL: "postgres://u:secret@h/db", Pipeline: "Bad-Name", Tables: tableIDs("a", "a")})
	wantErr(t, err, nil, `replication slot name "sluice_Bad-Name" may hold only lower-case letters`, "listed twice")
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows the password: %v", err)
	}
	_, err = New(Config{URL: "postgres://h/db", Pipeline: "p", Tables: tableIDs("a"), Keys: map[change.TableID][]string{{Schema: "public", Name: "b"}: {"x"}}})
	wantErr(t, err, nil, "key declared for table public.b, which is not among the tables")
}

func TestWALLevelError(t *testing.T) {
	p := newCluster(t, testenv.PostgresOptions{Settings: []string{"wal_level = replica"}})
	url := newDB(t, p, "CREATE TABLE a (id int PRIMARY KEY)")
	_, err := newSource(t, url, nil, "a").Prepare(context.Background())
	wantErr(t, err, ErrWALLevel, `wal_level is "replica"`, "ALTER SYSTEM SET wal_level = logical", "restart")
}

func TestCapacityErrors(t *testing.T) {
	ctx := context.Background()
	p := newCluster(t, testenv.PostgresOptions{Settings: []string{"max_replication_slots = 2", "max_wal_senders = 1"}})
	url := newDB(t, p, "CREATE TABLE a (id int PRIMARY KEY)", "SELECT pg_create_logical_replication_slot('someone_else', 'pgoutput')")
	_, err := newSource(t, url, nil, "a").Prepare(ctx)
	wantErr(t, err, ErrNoSlot, "1 of max_replication_slots = 2 are in use", "drop unused slots", "raise max_replication_slots")

	exec(t, url, "SELECT pg_drop_replication_slot('someone_else')")
	pc, err := pgconn.Connect(ctx, url+"&replication=database")
	must(t, err)
	defer pc.Close(ctx)
	s := newSource(t, url, nil, "a")
	_, err = s.Prepare(ctx)
	wantErr(t, err, ErrNoWALSender, "max_wal_senders = 1", "raise max_wal_senders")

	// With the slot in place, a snapshot that finds no free WAL sender says so too.
	exec(t, url, "SELECT pg_create_logical_replication_slot('"+s.SlotName()+"', 'pgoutput')")
	s.tables[change.TableID{Schema: "public", Name: "a"}] = &tableMeta{table: &change.Table{Schema: "public", Name: "a"}}
	err = s.Snapshot(ctx, []*change.Table{{Schema: "public", Name: "a"}}, (&collector{}).emit)
	wantErr(t, err, ErrNoWALSender, "every WAL sender is in use", "raise max_wal_senders")

	// With every slot taken, the snapshot's temporary slot cannot be made.
	must(t, pc.Close(ctx))
	exec(t, url, "SELECT pg_create_logical_replication_slot('someone_else', 'pgoutput')")
	waitFor(t, "WAL sender to go", 0x10*1e9, func() bool {
		err = s.Snapshot(ctx, []*change.Table{{Schema: "public", Name: "a"}}, (&collector{}).emit)
		return !errors.Is(err, ErrNoWALSender)
	})
	wantErr(t, err, ErrNoSlot, "all replication slots are in use (a snapshot needs one more, temporarily)", "raise max_replication_slots")
}

func TestRoleAndTableErrors(t *testing.T) {
	ctx := context.Background()
	p := cluster(t)
	url := newDB(t, p,
		"CREATE TABLE a (id int PRIMARY KEY)", "CREATE TABLE secret (id int PRIMARY KEY)",
		"CREATE TABLE nopk (v int)", "CREATE TABLE declared (code text, v int)", "CREATE TABLE nothing (id int PRIMARY KEY)",
		"ALTER TABLE nothing REPLICA IDENTITY NOTHING", "CREATE VIEW vw AS SELECT 1 AS x",
		"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'norepl') THEN CREATE ROLE norepl LOGIN; CREATE ROLE repl LOGIN REPLICATION; END IF; END $$",
		"GRANT SELECT ON a TO norepl, repl", "GRANT CREATE ON SCHEMA public TO repl")

	_, err := newSource(t, withUser(url, "norepl"), nil, "a").Prepare(ctx)
	wantErr(t, err, ErrNoReplication, "role norepl has no REPLICATION attribute", `ALTER ROLE "norepl" WITH REPLICATION`, "rds_replication")

	_, err = newSource(t, withUser(url, "repl"), nil, "a", "secret").Prepare(ctx)
	wantErr(t, err, ErrNoPrivilege, "role repl has no SELECT privilege on table public.secret", `GRANT SELECT ON "public"."secret" TO "repl"`)

	_, err = newSource(t, url, nil, "missing", "vw").Prepare(ctx)
	wantErr(t, err, ErrNoTable, "table public.missing does not exist in database", "public.vw is not a table (relkind v)")

	_, err = newSource(t, url, nil, "nopk").Prepare(ctx)
	wantErr(t, err, ErrNoKey, "table public.nopk has no primary key", "ADD PRIMARY KEY", "declare its key", `ALTER TABLE "public"."nopk" REPLICA IDENTITY FULL`)

	keys := func(c *Config) { c.Keys = map[change.TableID][]string{{Schema: "public", Name: "declared"}: {"code"}} }
	_, err = newSource(t, url, keys, "declared").Prepare(ctx)
	wantErr(t, err, ErrNoKey, "the declared key (code) needs REPLICA IDENTITY FULL", `ALTER TABLE "public"."declared" REPLICA IDENTITY FULL`)

	_, err = newSource(t, url, nil, "nothing").Prepare(ctx)
	wantErr(t, err, ErrNoKey, "REPLICA IDENTITY NOTHING", "REPLICA IDENTITY DEFAULT")

	// None of the refused tables may have reached a publication: the
	// application's own UPDATEs on them would start failing.
	var n int
	conn, err := (&Source{cfg: Config{URL: url}}).connect(ctx)
	must(t, err)
	defer conn.Close(ctx)
	must(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_publication_tables").Scan(&n))
	if n != 0 {
		t.Errorf("%d tables were added to publications", n)
	}
	exec(t, url, "UPDATE nopk SET v = 1", "DELETE FROM declared")
}

func TestTeardown(t *testing.T) {
	ctx := context.Background()
	p := cluster(t)
	url := newDB(t, p, "CREATE TABLE a (id int PRIMARY KEY)")

	// Objects sluice created are removed, but not while the slot is in use.
	s := newSource(t, url, nil, "a")
	_, err := s.Prepare(ctx)
	must(t, err)
	stop := startStream(t, s, (&collector{}).emit)
	waitFor(t, "slot active", 0x10*1e9, func() bool { st, err := s.Status(ctx); return err == nil && st.Active })
	_, err = Teardown(ctx, s.cfg)
	wantErr(t, err, ErrSlotActive, "replication slot "+s.SlotName()+" is in use", "stop sluice")
	must(t, stop())
	var removed []string
	waitFor(t, "teardown", 0x10*1e9, func() bool {
		removed, err = Teardown(ctx, s.cfg)
		return !errors.Is(err, ErrSlotActive)
	})
	must(t, err)
	if strings.Join(removed, ",") != "replication slot "+s.SlotName()+",publication "+s.PublicationName() {
		t.Errorf("removed %v", removed)
	}
	removed, err = Teardown(ctx, s.cfg)
	if err != nil || len(removed) != 0 {
		t.Errorf("second teardown: %v %v", removed, err)
	}

	// The user's own publication and slot are used, never dropped.
	exec(t, url, "CREATE PUBLICATION mine FOR TABLE a", "COMMENT ON PUBLICATION mine IS 'owned by the app team'",
		"SELECT pg_create_logical_replication_slot('my_slot', 'pgoutput')")
	user := newSource(t, url, func(c *Config) { c.Publication = "mine"; c.Slot = "my_slot" }, "a")
	_, err = user.Prepare(ctx)
	must(t, err)
	removed, err = Teardown(ctx, user.cfg)
	if err != nil || len(removed) != 0 {
		t.Errorf("teardown of the user's objects: %v %v", removed, err)
	}

	// The user's publication with a slot sluice made: only the slot goes,
	// and the publication's comment is given back as it was.
	mixed := newSource(t, url, func(c *Config) { c.Publication = "mine"; c.Slot = "sluice_mixed" }, "a")
	_, err = mixed.Prepare(ctx)
	must(t, err)
	removed, err = Teardown(ctx, mixed.cfg)
	if err != nil || strings.Join(removed, ",") != "replication slot sluice_mixed" {
		t.Errorf("teardown of the slot in the user's publication: %v %v", removed, err)
	}
	conn, err := (&Source{cfg: Config{URL: url}}).connect(ctx)
	must(t, err)
	defer conn.Close(ctx)
	var comment string
	var slots int
	must(t, conn.QueryRow(ctx, "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = 'mine'").Scan(&comment))
	must(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'my_slot'").Scan(&slots))
	if comment != "owned by the app team" || slots != 1 {
		t.Errorf("user's objects changed: comment %q, my_slot count %d", comment, slots)
	}
}
