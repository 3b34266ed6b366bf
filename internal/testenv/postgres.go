package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throwaway cluster owned by this process.
type Postgres struct {
	Dir  string // data directory and socket directory live under it
	Port int
	Bin  string // directory of the server binaries

	asUser string // OS user the server runs as ("" for the current user)
	cmd    *exec.Cmd
	done   chan struct{}
	mu     sync.Mutex
	dbs    int
}

// PostgresOptions tunes the cluster. The zero value is right for tests.
type PostgresOptions struct {
	// Durable keeps fsync on; tests turn it off for speed since the cluster is thrown away.
	Durable bool
	// Settings are extra postgresql.conf lines, e.g. "max_wal_senders = 2".
	Settings []string
	// Encoding is the cluster's server encoding; UTF8 when empty.
	Encoding string
}

// ErrNoServer is returned when no Postgres server binaries can be found.
var ErrNoServer = errors.New("no Postgres server binaries found: install the Debian package postgresql (apt-get install -y postgresql) or set SLUICE_PG_BIN to the directory holding initdb and postgres")

// FindPostgresBin finds the directory with initdb and postgres: $SLUICE_PG_BIN,
// the newest /usr/lib/postgresql/*/bin, then $PATH.
func FindPostgresBin() (string, error) {
	if d := os.Getenv("SLUICE_PG_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("SLUICE_PG_BIN=%s has no initdb: %w", d, err)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNoServer
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartPostgres initialises and starts a new cluster in a fresh temporary
// directory. Postgres refuses to run as root, so as root it runs as the
// unprivileged "postgres" OS user that the Debian package creates.
func StartPostgres(ctx context.Context, opt PostgresOptions) (*Postgres, error) {
	bin, err := FindPostgresBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-pg-")
	if err != nil {
		return nil, fmt.Errorf("make data directory: %w", err)
	}
	p := &Postgres{Dir: dir, Bin: bin, done: make(chan struct{})}
	if os.Geteuid() == 0 {
		p.asUser = "postgres"
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the unprivileged OS user postgres (the Debian postgresql package creates it): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		// mktemp makes 0700 directories; the server user must reach its data dir.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, fmt.Errorf("hand %s to the postgres user: %w", dir, err)
		}
		for d := filepath.Dir(dir); d != "/"; d = filepath.Dir(d) {
			if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
				_ = os.Chmod(d, st.Mode().Perm()|0o011)
			}
		}
	}
	enc := opt.Encoding
	if enc == "" {
		enc = "UTF8"
	}
	data := filepath.Join(dir, "data")
	args := []string{"-D", data, "-U", "postgres", "-A", "trust", "-E", enc, "--no-sync"}
	if enc == "UTF8" {
		args = append(args, "--locale=C.UTF-8")
	} else {
		args = append(args, "--locale=C")
	}
	if out, err := p.command(ctx, filepath.Join(bin, "initdb"), args...).CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	fsync := "off"
	if opt.Durable {
		fsync = "on"
	}
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = '" + dir + "'",
		"wal_level = logical",
		"max_replication_slots = 100",
		"max_wal_senders = 100",
		"max_connections = 100",
		"fsync = " + fsync,
		"synchronous_commit = " + fsync,
		"full_page_writes = " + fsync,
		"shared_buffers = 128MB",
		"wal_sender_timeout = 60s",
		"log_min_messages = warning",
	}
	conf = append(conf, opt.Settings...)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString("\n" + strings.Join(conf, "\n") + "\n")
	f.Close()
	if err != nil {
		return nil, err
	}
	// A port found free can be taken before the server binds it: retry a few times.
	for attempt := 0; ; attempt++ {
		if p.Port, err = FreePort(); err != nil {
			return nil, err
		}
		if err = p.start(ctx, data); err == nil {
			return p, nil
		}
		if attempt == 3 || ctx.Err() != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

func (p *Postgres) start(ctx context.Context, data string) error {
	logPath := filepath.Join(p.Dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o666)
	if err != nil {
		return err
	}
	_ = os.Chmod(logPath, 0o666)
	// The server is not tied to ctx: it lives until Stop.
	cmd := p.command(context.Background(), filepath.Join(p.Bin, "postgres"), "-D", data, "-p", strconv.Itoa(p.Port))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, p.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited during start-up: %s", out)
		case <-ctx.Done():
			p.Stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("postgres did not accept connections within 30s: %w", err)
		}
	}
}

func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if p.asUser != "" {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", p.asUser, "--", name}, args...)...)
	}
	return exec.CommandContext(ctx, name, args...)
}

// URL is a connection URL for the superuser postgres to database db.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// CreateDatabase creates a new, empty database with a unique name and
// returns its name. Tests share one cluster and get a database each.
func (p *Postgres) CreateDatabase(ctx context.Context, prefix string) (string, error) {
	p.mu.Lock()
	p.dbs++
	name := fmt.Sprintf("%s_%d", sanitize(prefix), p.dbs)
	p.mu.Unlock()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return name, nil
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 40 {
		out = out[:40]
	}
	if out == "" || out[0] >= '0' && out[0] <= '9' {
		out = "db_" + out
	}
	return out
}

// Stop shuts the server down fast and removes its directory.
func (p *Postgres) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		select {
		case <-p.done:
		default:
			// runuser does not pass signals on: signal the postmaster
			// itself (SIGINT is a fast shutdown), found in its pid file.
			if pid := p.postmasterPID(); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGINT)
			} else {
				_ = p.cmd.Process.Signal(syscall.SIGINT)
			}
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				// Everything we started shares one process group.
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
			}
		}
	}
	_ = os.RemoveAll(p.Dir)
}

func (p *Postgres) postmasterPID() int {
	data, err := os.ReadFile(filepath.Join(p.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}

// TB is the part of testing.TB the helpers need; it keeps this package free
// of the testing import so that quickstart can use it too.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// NewPostgres starts a cluster for one test and stops it when the test ends.
func NewPostgres(t TB, opt PostgresOptions) *Postgres {
	t.Helper()
	p, err := StartPostgres(context.Background(), opt)
	if err != nil {
		t.Fatalf("start throwaway postgres: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}
