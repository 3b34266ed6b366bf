package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(`
pipeline: shop
source:
  url: postgres://sluice:${PGPASS}@db:5432/shop
tables:
  - public.customers
  - name: sales.events
    key: [id, at]
target:
  url: duckdb:${DIR:-/tmp}/shop.duckdb
batch:
  max_bytes: 4MiB
  interval: 50ms
stream:
  kinesis:
    stream: arn:aws:kinesis:eu-west-1:123456789012:stream/shop
`), env(map[string]string{"PGPASS": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.URL != "postgres://sluice:s3cret@db:5432/shop" || c.Target.URL != "duckdb:/tmp/shop.duckdb" {
		t.Errorf("interpolation: %q %q", c.Source.URL, c.Target.URL)
	}
	if c.Batch.MaxBytes != 4<<20 || c.Batch.Interval != 50*time.Millisecond || c.Batch.MaxChanges != 10000 {
		t.Errorf("batch: %+v", c.Batch)
	}
	if c.Stream.Role != "both" {
		t.Errorf("stream default role = %q", c.Stream.Role)
	}
	ids, keys, err := c.TableIDs()
	if err != nil || len(ids) != 2 || strings.Join(keys[ids[1]], ",") != "id,at" {
		t.Errorf("tables: %v %v %v", ids, keys, err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if got := Redact(c.Source.URL); strings.Contains(got, "s3cret") {
		t.Errorf("Redact left the password: %s", got)
	}
}

func TestParseErrorsGiveTheLine(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"unknown key": {"pipeline: a\nsource:\n  urll: x\n", `line 3: unknown key "urll" in source (known keys: max_retained_wal, publication, slot, status_interval, url)`},
		"wrong type":  {"snapshot:\n  workers: many\n", `line 2: snapshot.workers: "many": want a whole number`},
		"duration":    {"batch:\n  interval: soon\n", `line 2: batch.interval: "soon": want a duration`},
		"bytes":       {"batch:\n  max_bytes: lots\n", `line 2: batch.max_bytes: "lots": want a size`},
		"not mapping": {"source: [1, 2]\n", "line 1: source must be a mapping"},
		"missing env": {"source:\n  url: postgres://u:${NOPE}@h/db\n", "line 2: environment variable NOPE is not set"},
		"bad yaml":    {"source: {\n", "not valid YAML"},
		"list":        {"tables: {a: 1}\n", "line 1: tables must be a list"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	c := Default()
	err := c.Validate()
	for _, want := range []string{"source.url is empty", "tables is empty", "no target"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate of an empty config = %v, want it to mention %q", err, want)
		}
	}
	c.Source.URL = "mysql://x"
	c.Tables = []TableSpec{{Name: "a.b.c"}}
	c.Target.URL = "sqlite:x"
	c.Pipeline = "Bad-Name"
	err = c.Validate()
	for _, want := range []string{"want a postgres://", "tables[0]", "want duckdb:PATH", `pipeline "Bad-Name"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to mention %q", err, want)
		}
	}
}

func TestReferenceListsEveryKey(t *testing.T) {
	ref := Reference()
	for _, k := range []string{"`source.url`", "`tables[].key`", "`batch.max_bytes` | `16MiB`", "`stream.kinesis.endpoint`"} {
		if !strings.Contains(ref, k) {
			t.Errorf("reference lacks %s", k)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("pipeline: a\ntables: [x]\nsource: {url: postgres://h/db}\ntarget: duckdb:x\n"))
	f.Add([]byte("batch: {max_bytes: 1GiB}\nstream: {kinesis: {stream: s}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, env(nil))
		if err == nil {
			_ = c.Validate()
		}
	})
}

// docs/config.md is generated from the declarations; keep it current with
// `go run ./cmd/sluice config` (see the file's head).
func TestDocsMatchDeclarations(t *testing.T) {
	data, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(data), Reference()) {
		t.Error("docs/config.md is out of date: regenerate it from `sluice config`")
	}
}
