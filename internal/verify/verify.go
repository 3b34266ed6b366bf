package verify

import (
	"context"
	"fmt"
	"sort"

	"github.com/sluice-dev/sluice/internal/change"
)

// Bucket is one part of a table's key space.
type Bucket struct {
	ID   int    `json:"id"`
	Rows int64  `json:"rows"`
	Sum  string `json:"sum"` // decimal text, order-independent
}

// KeyRow is one row of a bucket: its key in text and the hash of the row.
type KeyRow struct {
	Key  string `json:"key"`
	Hash string `json:"hash"`
}

// Side is one database's view of a table (the source, or the target).
type Side interface {
	Checksums(ctx context.Context, t *change.Table, buckets int) ([]Bucket, error)
	BucketRows(ctx context.Context, t *change.Table, buckets, bucket, limit int) ([]KeyRow, error)
}

// Result is the verdict for one table.
type Result struct {
	Table      string   `json:"table"`
	SourceRows int64    `json:"source_rows"`
	TargetRows int64    `json:"target_rows"`
	Match      bool     `json:"match"`
	Buckets    int      `json:"buckets"`
	Differing  []int    `json:"differing_buckets,omitempty"`
	Missing    []string `json:"missing_keys,omitempty"`   // in the source, not in the target
	Extra      []string `json:"extra_keys,omitempty"`     // in the target, not in the source
	Different  []string `json:"different_keys,omitempty"` // in both, with other values
	Error      string   `json:"error,omitempty"`
	// Stopped is why the view whose table this is stopped: it was not
	// compared (its table keeps its last output until the view is fixed).
	Stopped string `json:"stopped,omitempty"`
	// Skipped is why the table cannot be compared with the source (a view
	// over event streams); it does not make the report a mismatch.
	Skipped string `json:"skipped,omitempty"`
}

// Options tune a comparison.
type Options struct {
	Buckets  int // parts of the key space; default 64
	KeyLimit int // most mismatching keys reported per kind; default 10
}

// Compare compares one table on both sides.
func Compare(ctx context.Context, t *change.Table, src, dst Side, opt Options) (Result, error) {
	if opt.Buckets <= 0 {
		opt.Buckets = 64
	}
	if opt.KeyLimit <= 0 {
		opt.KeyLimit = 10
	}
	r := Result{Table: t.ID().String(), Buckets: opt.Buckets}
	sb, err := src.Checksums(ctx, t, opt.Buckets)
	if err != nil {
		return r, fmt.Errorf("checksum source table %s: %w", t.ID(), err)
	}
	db, err := dst.Checksums(ctx, t, opt.Buckets)
	if err != nil {
		return r, fmt.Errorf("checksum target table %s: %w", t.ID(), err)
	}
	sm, dm := index(sb), index(db)
	for _, b := range sb {
		r.SourceRows += b.Rows
	}
	for _, b := range db {
		r.TargetRows += b.Rows
	}
	for id := 0; id < opt.Buckets; id++ {
		if sm[id] != dm[id] {
			r.Differing = append(r.Differing, id)
		}
	}
	r.Match = len(r.Differing) == 0
	// Look into a few differing buckets for the keys, bounded by KeyLimit.
	limit := opt.KeyLimit * 100
	for _, id := range r.Differing {
		if len(r.Missing) >= opt.KeyLimit && len(r.Extra) >= opt.KeyLimit && len(r.Different) >= opt.KeyLimit {
			break
		}
		srows, err := src.BucketRows(ctx, t, opt.Buckets, id, limit)
		if err != nil {
			return r, fmt.Errorf("list source rows of %s: %w", t.ID(), err)
		}
		drows, err := dst.BucketRows(ctx, t, opt.Buckets, id, limit)
		if err != nil {
			return r, fmt.Errorf("list target rows of %s: %w", t.ID(), err)
		}
		m, e, d := diff(srows, drows)
		r.Missing = appendUpTo(r.Missing, m, opt.KeyLimit)
		r.Extra = appendUpTo(r.Extra, e, opt.KeyLimit)
		r.Different = appendUpTo(r.Different, d, opt.KeyLimit)
	}
	return r, nil
}

type sums struct {
	rows int64
	sum  string
}

func index(bs []Bucket) map[int]sums {
	m := make(map[int]sums, len(bs))
	for _, b := range bs {
		if b.Rows == 0 {
			continue // an empty bucket is the same as an absent one
		}
		m[b.ID] = sums{b.Rows, b.Sum}
	}
	return m
}

// diff compares one bucket's rows as multisets: a keyless table's rows are
// keyed by their whole value, so identical rows share a key and are
// counted ("(...) x2" when one side holds two more of them).
func diff(src, dst []KeyRow) (missing, extra, different []string) {
	type side struct {
		n    int
		hash string
	}
	count := func(rows []KeyRow) map[string]side {
		m := make(map[string]side, len(rows))
		for _, r := range rows {
			e := m[r.Key]
			e.n++
			e.hash = r.Hash
			m[r.Key] = e
		}
		return m
	}
	name := func(key string, n int) string {
		if n == 1 {
			return key
		}
		return fmt.Sprintf("%s x%d", key, n)
	}
	s, d := count(src), count(dst)
	for k, a := range s {
		b := d[k]
		switch {
		case b.n == 0 || a.n > b.n:
			missing = append(missing, name(k, a.n-b.n))
		case a.n == b.n && a.hash != b.hash:
			different = append(different, k)
		}
	}
	for k, b := range d {
		if a := s[k]; b.n > a.n {
			extra = append(extra, name(k, b.n-a.n))
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(different)
	return missing, extra, different
}

func appendUpTo(dst, src []string, n int) []string {
	for _, s := range src {
		if len(dst) >= n {
			break
		}
		dst = append(dst, s)
	}
	return dst
}
