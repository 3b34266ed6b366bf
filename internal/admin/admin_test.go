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
	return map[string]string{"op": op, "args": string(args)}, nil
}

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
