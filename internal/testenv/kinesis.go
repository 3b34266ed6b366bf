package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// Kinesis is a local Kinesis-API server (kinesalite or kinesis-local) owned
// by this process, listening on 127.0.0.1.
type Kinesis struct {
	// Kind is "kinesalite" or "kinesis-local".
	Kind string
	// Endpoint is the plain-HTTP base URL, e.g. http://127.0.0.1:34567,
	// for an SDK client's BaseEndpoint.
	Endpoint string
	// Region and Account are what the server puts in stream ARNs.
	Region  string
	Account string

	cmd   *exec.Cmd
	stdin io.Closer
	done  chan struct{}
	out   *tailBuffer
}

// KinesisRegion is the region the local servers run in and the clients sign for.
const KinesisRegion = "us-east-1"

// KinesisAccount is the account id kinesis-local puts in ARNs by default.
const KinesisAccount = "000000000000"

// ErrNoKinesisServers is returned when the npm packages of the local servers
// are not installed and cannot be installed.
var ErrNoKinesisServers = errors.New("local Kinesis-API servers not installed: run scripts/setup.sh (it runs `npm ci` in tools/kinesis; needs node and npm)")

// StartKinesalite starts kinesalite 3.3.3 (in memory). It is fast (~0.15 s to
// start, ~20k records/s) but knows no resharding, on-demand streams or ARNs.
func StartKinesalite(ctx context.Context) (*Kinesis, error) {
	dir, err := kinesisTools(ctx, "kinesalite")
	if err != nil {
		return nil, err
	}
	// createStreamMs 20: streams become ACTIVE almost at once.
	return startKinesis(ctx, "kinesalite", dir, nil, filepath.Join(dir, "kinesalite.js"), "20", "200")
}

// StartKinesisLocal starts kinesis-local 0.6.2 (kinesis-mock). It is slow
// (~750 records/s) but supports resharding, StreamARN and on-demand streams.
func StartKinesisLocal(ctx context.Context) (*Kinesis, error) {
	dir, err := kinesisTools(ctx, "kinesis-local")
	if err != nil {
		return nil, err
	}
	env := []string{
		// Both ports 0: the kernel picks; the preload reports them.
		"KINESIS_MOCK_TLS_PORT=0",
		"KINESIS_MOCK_PLAIN_PORT=0",
		"KINESIS_MOCK_CERT_PATH=" + filepath.Join(dir, "node_modules", "kinesis-local", "server.json"),
		"AWS_REGION=" + KinesisRegion,
		"AWS_ACCOUNT_ID=" + KinesisAccount,
		"LOG_LEVEL=WARN",
		"SHOULD_PERSIST_DATA=false",
		"CREATE_STREAM_DURATION=50ms",
		"DELETE_STREAM_DURATION=50ms",
		"SPLIT_SHARD_DURATION=50ms",
		"MERGE_SHARDS_DURATION=50ms",
		"UPDATE_SHARD_COUNT_DURATION=50ms",
		"UPDATE_STREAM_MODE_DURATION=50ms",
	}
	// loopback.js forces every listener onto 127.0.0.1: kinesis-local binds
	// all interfaces and has no option to say otherwise.
	return startKinesis(ctx, "kinesis-local", dir, env,
		"--require", filepath.Join(dir, "loopback.js"),
		filepath.Join(dir, "node_modules", "kinesis-local", "main.js"))
}

// NewKinesalite starts kinesalite for one test and stops it when the test ends.
func NewKinesalite(t TB) *Kinesis {
	t.Helper()
	k, err := StartKinesalite(context.Background())
	if err != nil {
		t.Fatalf("start kinesalite: %v", err)
	}
	t.Cleanup(k.Stop)
	return k
}

// NewKinesisLocal starts kinesis-local for one test and stops it when the test ends.
func NewKinesisLocal(t TB) *Kinesis {
	t.Helper()
	k, err := StartKinesisLocal(context.Background())
	if err != nil {
		t.Fatalf("start kinesis-local: %v", err)
	}
	t.Cleanup(k.Stop)
	return k
}

// AWSConfig is an SDK configuration for the server: dummy static
// credentials (both servers reject unsigned requests and accept any key), the
// local region, and the endpoint.
func (k *Kinesis) AWSConfig() aws.Config {
	return aws.Config{
		Region:       k.Region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDSLUICETEST", "sluice-test-secret", ""),
		BaseEndpoint: aws.String(k.Endpoint),
	}
}

// Client returns an SDK client for the server.
func (k *Kinesis) Client(optFns ...func(*kinesis.Options)) *kinesis.Client {
	return kinesis.NewFromConfig(k.AWSConfig(), optFns...)
}

// StreamARN is the ARN the server gives a stream of that name.
func (k *Kinesis) StreamARN(name string) string {
	return fmt.Sprintf("arn:aws:kinesis:%s:%s:stream/%s", k.Region, k.Account, name)
}

// CreateStream creates a provisioned stream with the given number of shards
// and waits until it is ACTIVE.
func (k *Kinesis) CreateStream(ctx context.Context, name string, shards int) error {
	c := k.Client()
	_, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{
		StreamName: aws.String(name),
		ShardCount: aws.Int32(int32(shards)),
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	return k.WaitActive(ctx, name)
}

// WaitActive waits until the stream is ACTIVE (after a create or a reshard).
func (k *Kinesis) WaitActive(ctx context.Context, name string) error {
	c := k.Client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %s", out.StreamDescriptionSummary.StreamStatus)
			}
			return fmt.Errorf("wait for stream %s to become ACTIVE: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Output returns the last few KiB the server printed, for test failures.
func (k *Kinesis) Output() string { return k.out.String() }

// Stop kills the server process (exactly the one started) and waits for it.
func (k *Kinesis) Stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	select {
	case <-k.done:
		return
	default:
	}
	// Both servers keep everything in memory: nothing to shut down cleanly
	// (kinesis-local ignores SIGTERM for seconds).
	_ = k.stdin.Close()
	_ = k.cmd.Process.Kill()
	<-k.done
}

func startKinesis(ctx context.Context, kind, dir string, env []string, args ...string) (*Kinesis, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("start %s: node not found on PATH: install Node.js (Debian package nodejs) or run scripts/setup.sh", kind)
	}
	// The server is not tied to ctx: it lives until Stop.
	cmd := exec.Command(node, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	// Own process group (a terminal's ^C reaches the test, not the server).
	// No Pdeathsig: it fires when the OS thread that started the server
	// exits, not the process; the server exits instead when its stdin
	// closes, which the kernel does when this process goes away.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	tail := &tailBuffer{max: 16 << 10}
	cmd.Stderr = tail
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", kind, err)
	}
	k := &Kinesis{Kind: kind, Region: KinesisRegion, Account: KinesisAccount, cmd: cmd, stdin: stdin, done: make(chan struct{}), out: tail}
	ports := make(chan int, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "sluice-listening "); ok {
				f := strings.Fields(rest)
				if len(f) == 2 {
					if p, err := strconv.Atoi(f[1]); err == nil {
						ports <- p
						continue
					}
				}
			}
			_, _ = tail.Write([]byte(line + "\n"))
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(k.done) }()

	want := 1
	if kind == "kinesis-local" {
		want = 2 // a TLS port and a plain one, in no promised order
	}
	var got []int
	timeout := time.After(30 * time.Second)
	for len(got) < want {
		select {
		case p := <-ports:
			got = append(got, p)
		case <-k.done:
			return nil, fmt.Errorf("start %s: exited during start-up: %s", kind, tail.String())
		case <-ctx.Done():
			k.Stop()
			return nil, ctx.Err()
		case <-timeout:
			k.Stop()
			return nil, fmt.Errorf("start %s: not listening within 30s: %s", kind, tail.String())
		}
	}
	for _, p := range got {
		ep := "http://127.0.0.1:" + strconv.Itoa(p)
		if len(got) == 1 || speaksHTTP(ctx, ep) {
			k.Endpoint = ep
			break
		}
	}
	if k.Endpoint == "" {
		k.Stop()
		return nil, fmt.Errorf("start %s: none of ports %v answers plain HTTP", kind, got)
	}
	return k, nil
}

// speaksHTTP tells kinesis-local's plain port from its TLS port.
func speaksHTTP(ctx context.Context, endpoint string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/", strings.NewReader("{}"))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "Kinesis_20131202.ListStreams")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

var installMu sync.Mutex

// kinesisTools returns tools/kinesis of the repository (found by walking up
// from the working directory to go.mod), installing its npm packages first
// if they are missing, so `go test` works on a fresh clone without setup.
func kinesisTools(ctx context.Context, pkg string) (string, error) {
	dir := os.Getenv("SLUICE_KINESIS_TOOLS")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "tools", "kinesis")
	}
	marker := filepath.Join(dir, "node_modules", pkg, "package.json")
	if _, err := os.Stat(marker); err == nil {
		return dir, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "package-lock.json")); err != nil {
		return "", fmt.Errorf("%w: %s has no package-lock.json", ErrNoKinesisServers, dir)
	}
	installMu.Lock()
	defer installMu.Unlock()
	// Test binaries of several packages run at once: one installs, the
	// others wait on the lock and then find the packages there.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "sluice-kinesis-npm.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("lock %s for npm ci: %w", dir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s for npm ci: %w", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(marker); err == nil {
		return dir, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", ErrNoKinesisServers
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: npm ci: %v\n%s", ErrNoKinesisServers, err, out)
	}
	return dir, nil
}

// RepoRoot finds the repository root: the nearest directory at or above the
// working directory that holds go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
