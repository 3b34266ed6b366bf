package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/internal/query"
)

// Result is a query result in plain JSON values (package query makes them).
type Result = query.Result

// Backend answers the endpoint's requests. Status is required; the others
// are optional abilities, found by type assertion.
type Backend interface {
	Status(ctx context.Context) (any, error)
}

// Querier runs one read-only SQL statement against the target.
type Querier interface {
	Query(ctx context.Context, sql string) (*Result, error)
}

// Metricser serves the process's metrics in the Prometheus text format.
type Metricser interface {
	Metrics() http.Handler
}

// Caller runs a named target operation with JSON arguments (verify's
// checksums), so the endpoint needs no knowledge of each operation.
type Caller interface {
	Call(ctx context.Context, op string, args json.RawMessage) (any, error)
}

// Server is a running endpoint.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	file string
}

// Start listens on addr (host:port; port 0 picks one) and writes the
// address to file so other sluice commands can find the process.
func Start(addr, file string, b Backend) (*Server, error) {
	if host, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("admin.listen %q: want host:port, e.g. 127.0.0.1:0", addr)
	} else if host == "" {
		return nil, fmt.Errorf("admin.listen %q: name the interface (127.0.0.1 keeps it local)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start admin endpoint on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		v, err := b.Status(r.Context())
		reply(w, v, err)
	})
	if m, ok := b.(Metricser); ok {
		mux.Handle("GET /metrics", m.Metrics())
	}
	mux.HandleFunc("POST /query", func(w http.ResponseWriter, r *http.Request) {
		q, ok := b.(Querier)
		if !ok {
			reply(w, nil, Errorf(CodeUnsupported, "this target does not take queries through sluice: query it directly"))
			return
		}
		var req struct {
			SQL string `json:"sql"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			reply(w, nil, Errorf(CodeBadRequest, "bad request: %w", err))
			return
		}
		res, err := q.Query(r.Context(), req.SQL)
		reply(w, res, err)
	})
	mux.HandleFunc("POST /call/{op}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := b.(Caller)
		if !ok {
			reply(w, nil, Errorf(CodeUnsupported, "operation not supported by this process"))
			return
		}
		args, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			reply(w, nil, Errorf(CodeBadRequest, "read the request: %w", err))
			return
		}
		v, err := c.Call(r.Context(), r.PathValue("op"), args)
		reply(w, v, err)
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln, file: file}
	if file != "" {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			ln.Close()
			return nil, fmt.Errorf("make state directory: %w", err)
		}
		if err := os.WriteFile(file, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			ln.Close()
			return nil, fmt.Errorf("write admin address file: %w", err)
		}
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the endpoint and removes its address file.
func (s *Server) Close() error {
	if s.file != "" {
		_ = os.Remove(s.file)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// reply writes v, or err as {"code": ..., "error": ...}: the code is what
// a client acts on, the message what a person reads.
func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusUnprocessableEntity)
		_ = json.NewEncoder(w).Encode(errorReply{Code: CodeOf(err), Error: err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// errorReply is an error as it crosses the HTTP boundary.
type errorReply struct {
	Code  Code   `json:"code"`
	Error string `json:"error"`
}

// ErrNotRunning means no running sluice was found for the pipeline.
var ErrNotRunning = errors.New("no running sluice for this pipeline")

// Client talks to a running sluice.
type Client struct {
	base string
	http *http.Client
}

// Dial reads the address file and checks that the process answers.
func Dial(ctx context.Context, file string) (*Client, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, ErrNotRunning
	}
	c := &Client{base: "http://" + strings.TrimSpace(string(data)), http: &http.Client{Timeout: 10 * time.Minute}}
	var v any
	if err := c.do(ctx, http.MethodGet, "/status", nil, &v); err != nil {
		var ae *Error
		if errors.As(err, &ae) {
			return c, nil // it answers, even if status itself failed
		}
		return nil, ErrNotRunning // a stale file from a process that is gone
	}
	return c, nil
}

// Code names what went wrong in a call, so that a client can act on it
// without reading the message. It travels as the error reply's "code".
type Code string

// The codes. A client switches on the few it handles and reports the
// message for the rest.
const (
	CodeNone        Code = ""            // no error
	CodeFailed      Code = "failed"      // anything not named below: the message says what
	CodeBadRequest  Code = "bad_request" // the request could not be read
	CodeUnsupported Code = "unsupported" // this process does not offer the operation
	// CodeNoHold: this process cannot hold its target at a source position
	// (a stream consumer: its target is fed by a stream, not by a slot).
	CodeNoHold    Code = "no_hold"
	CodeHeld      Code = "held"       // another verify holds the pipeline
	CodeNotPaused Code = "not_paused" // hold without a pause first (or after it lapsed)
	CodePassed    Code = "passed"     // the target already applied changes past the position
	CodeStalled   Code = "stalled"    // the target refuses the batch it must apply first
	CodeTimeout   Code = "timeout"    // the pipeline did not get there in time
)

// Error is an error with a code: made by a backend (Errorf, Wrap) so that
// the code crosses the HTTP boundary, and rebuilt by the Client from the
// reply.
type Error struct {
	Code Code
	Msg  string
	err  error // in the process that made it: the cause
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.err }

// Errorf makes an error with a code; %w wraps as in fmt.Errorf.
func Errorf(code Code, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Msg: err.Error(), err: err}
}

// Wrap gives err a code, keeping its message. Wrap(code, nil) is nil.
func Wrap(code Code, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Msg: err.Error(), err: err}
}

// CodeOf is err's code: CodeNone for nil, CodeFailed for an error that
// carries none.
func CodeOf(err error) Code {
	if err == nil {
		return CodeNone
	}
	var e *Error
	if errors.As(err, &e) && e.Code != CodeNone {
		return e.Code
	}
	return CodeFailed
}

// Status fetches the running process's status into v.
func (c *Client) Status(ctx context.Context, v any) error {
	return c.do(ctx, http.MethodGet, "/status", nil, v)
}

// Query runs a read-only statement in the running process.
func (c *Client) Query(ctx context.Context, sql string) (*Result, error) {
	var r Result
	err := c.do(ctx, http.MethodPost, "/query", map[string]string{"sql": sql}, &r)
	return &r, err
}

// Call runs a named operation in the running process.
func (c *Client) Call(ctx context.Context, op string, args, out any) error {
	return c.do(ctx, http.MethodPost, "/call/"+op, args, out)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach running sluice at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e errorReply
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		if e.Code == CodeNone {
			e.Code = CodeFailed
		}
		return &Error{Code: e.Code, Msg: e.Error}
	}
	if out == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(out)
}
