package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

// side is a table held in memory: key -> row hash, in buckets by key.
type side map[string]string

func (s side) bucket(key string, buckets int) int { return int(key[0]) % buckets }

func (s side) Checksums(_ context.Context, _ *change.Table, buckets int) ([]Bucket, error) {
	out := make([]Bucket, buckets)
	sums := make([]int, buckets)
	for k, h := range s {
		b := s.bucket(k, buckets)
		out[b].Rows++
		sums[b] += len(h) * int(h[0])
	}
	for i := range out {
		out[i].ID = i
		out[i].Sum = strings.Repeat("x", sums[i]%97)
	}
	return out, nil
}

func (s side) BucketRows(_ context.Context, _ *change.Table, buckets, bucket, _ int) ([]KeyRow, error) {
	var out []KeyRow
	for k, h := range s {
		if s.bucket(k, buckets) == bucket {
			out = append(out, KeyRow{Key: k, Hash: h})
		}
	}
	return out, nil
}

var tbl = &change.Table{Schema: "public", Name: "t"}

func TestCompareNamesMissingExtraAndDifferentKeys(t *testing.T) {
	src := side{"a1": "h1", "b2": "h2", "c3": "h3", "d4": "h4"}
	dst := side{"a1": "h1", "b2": "XX", "d4": "h4", "e5": "h5"}
	r, err := Compare(context.Background(), tbl, src, dst, Options{Buckets: 4})
	if err != nil {
		t.Fatal(err)
	}
	if r.Match || r.SourceRows != 4 || r.TargetRows != 4 {
		t.Fatalf("result %+v", r)
	}
	if !reflect.DeepEqual(r.Missing, []string{"c3"}) || !reflect.DeepEqual(r.Extra, []string{"e5"}) || !reflect.DeepEqual(r.Different, []string{"b2"}) {
		t.Errorf("missing %v extra %v different %v", r.Missing, r.Extra, r.Different)
	}
	same, err := Compare(context.Background(), tbl, src, src, Options{Buckets: 4})
	if err != nil || !same.Match || len(same.Differing) != 0 {
		t.Errorf("identical sides: %+v, %v", same, err)
	}
}

func TestReportPrintsAndMarshals(t *testing.T) {
	rep := &Report{Match: false, At: "0/16B3748", Tables: []Result{
		{Table: "public.t", SourceRows: 4, TargetRows: 3, Buckets: 4, Differing: []int{1}, Missing: []string{"(7)"}},
	}}
	var b bytes.Buffer
	rep.Print(&b)
	for _, want := range []string{"public.t", "DIFFERS in 1 of 4 buckets", "missing in target: (7)", "0/16B3748", "verify: MISMATCH"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	js, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(js), `"missing_keys":["(7)"]`) {
		t.Errorf("json %s, %v", js, err)
	}
}
