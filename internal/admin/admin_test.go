package admin

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

type backend struct{}

func (backend) Status(context.Context) (any, error) { return map[string]int{"applied": 7}, nil }
func (backend) Query(_ context.Context, sql string) (*Result, error) {
	if sql == "bad" {
		return nil, errors.New("syntax error at bad")
	}
	return &Result{Columns: []string{"n"}, Rows: [][]any{{1}}}, nil
}
func (backend) Call(_ context.Context, op string, args json.RawMessage) (any, error) {
	switch op {
	case "pause":
		return nil, Errorf(CodeNoHold, "cannot hold: %w", errCause)
	case "plain":
		return nil, errors.New("no code given")
	}
	return map[string]string{"op": op, "args": string(args)}, nil
}

var errCause = errors.New("a stream consumer")

func TestEndpointRoundTrip(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "p.admin")
	if _, err := Dial(ctx, file); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial with no file = %v, want ErrNotRunning", err)
	}
	s, err := Start("127.0.0.1:0", file, backend{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("listens on %s, want loopback", s.Addr())
	}
	c, err := Dial(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]int
	if err := c.Status(ctx, &st); err != nil || st["applied"] != 7 {
		t.Errorf("Status = %v, %v", st, err)
	}
	if r, err := c.Query(ctx, "select 1"); err != nil || len(r.Rows) != 1 {
		t.Errorf("Query = %v, %v", r, err)
	}
	if _, err := c.Query(ctx, "bad"); err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Errorf("bad Query error = %v", err)
	}
	var out map[string]string
	if err := c.Call(ctx, "checksums", map[string]int{"buckets": 4}, &out); err != nil || out["op"] != "checksums" || !strings.Contains(out["args"], `"buckets":4`) {
		t.Errorf("Call = %v, %v", out, err)
	}
	s.Close()
	if _, err := Dial(ctx, file); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Dial after Close = %v, want ErrNotRunning", err)
	}
}

func TestStartRefusesHostlessListen(t *testing.T) {
	if _, err := Start(":0", "", backend{}); err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("Start(:0) = %v, want an error suggesting loopback", err)
	}
}

// An error's code crosses the HTTP boundary with its message; an error
// without one arrives as CodeFailed.
func TestErrorCodes(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "p.admin")
	s, err := Start("127.0.0.1:0", file, backend{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := Dial(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Call(ctx, "pause", nil, nil)
	if CodeOf(err) != CodeNoHold || err.Error() != "cannot hold: a stream consumer" {
		t.Errorf("pause: code %q, error %v", CodeOf(err), err)
	}
	if err := c.Call(ctx, "plain", nil, nil); CodeOf(err) != CodeFailed || err.Error() != "no code given" {
		t.Errorf("plain: code %q, error %v", CodeOf(err), err)
	}
	if err := c.Call(ctx, "checksums", nil, nil); CodeOf(err) != CodeNone {
		t.Errorf("checksums: code %q, error %v", CodeOf(err), err)
	}
	// Inside the process the cause is kept.
	if err := Errorf(CodeNoHold, "cannot hold: %w", errCause); !errors.Is(err, errCause) {
		t.Errorf("Errorf lost its cause: %v", err)
	}
	if Wrap(CodeHeld, nil) != nil {
		t.Error("Wrap(code, nil) is not nil")
	}
	s2, err := Start("127.0.0.1:0", "", struct{ Backend }{backend{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	c2 := &Client{base: "http://" + s2.Addr(), http: c.http}
	if _, err := c2.Query(ctx, "select 1"); CodeOf(err) != CodeUnsupported {
		t.Errorf("query on a backend without Query: code %q, error %v", CodeOf(err), err)
	}
}
