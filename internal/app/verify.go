package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/verify"
)

// Verify compares every table (and view) of the config with its source.
// With a running sluice it holds the pipeline at the source snapshot's
// position; without one the target is still, and any lag is reported.
func Verify(ctx context.Context, c *config.Config, opt verify.Options) (*verify.Report, error) {
	tables, err := DescribeTables(ctx, c)
	if err != nil {
		return nil, err
	}
	cl, dialErr := admin.Dial(ctx, c.AdminFile())
	// Redshift cannot be held at a source position (the stream and the
	// merge are in between): verify reads it directly, without a hold.
	running := dialErr == nil && !c.IsRedshift()
	var (
		snap *verify.SourceSnapshot
		note string
		held bool
	)
	// A running pipeline is paused first, then the source snapshot is taken
	// (its position is after everything the target applied), then the
	// target is moved to exactly that position.
	if running {
		err := cl.Call(ctx, "pause", nil, nil)
		switch admin.CodeOf(err) {
		case admin.CodeNone:
			held = true
			defer func() { _ = cl.Call(context.WithoutCancel(ctx), "release", nil, nil) }()
		case admin.CodeNoHold:
			note = "compared while a stream consumer runs, without a common point: a difference may be changes still in the stream; run verify again once the stream is drained"
		default:
			return nil, fmt.Errorf("pause the running pipeline: %w", err)
		}
	}
	ids := make([]change.TableID, len(tables))
	for i, t := range tables {
		ids[i] = t.ID()
	}
	for attempt := 1; ; attempt++ {
		snap, err = verify.OpenSourceSnapshot(ctx, c.Source.URL, ids)
		if errors.Is(err, verify.ErrRewritten) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	if held {
		if err := cl.Call(ctx, "hold", map[string]uint64{"lsn": uint64(snap.At)}, nil); err != nil {
			snap.Close(ctx)
			return nil, fmt.Errorf("hold the running pipeline at the source snapshot: %w", err)
		}
	}
	defer snap.Close(ctx)

	var dst verify.Side
	if c.IsRedshift() {
		side, closeSide, rnote, err := openRedshiftSide(ctx, c, tables)
		if err != nil {
			return nil, err
		}
		defer closeSide()
		dst, note = side, rnote
	} else if running {
		dst = remoteSide{cl}
	} else {
		tgt, err := openTargetReadOnly(ctx, c, discardLog())
		if err != nil {
			return nil, err
		}
		defer tgt.Close()
		dst = tgt
		if lag, err := targetLag(ctx, c, snap.At); err == nil && lag != "" {
			note = lag
		}
	}
	src := sourceSide{snap.Tx}
	rep := &verify.Report{Match: true, Note: note}
	if held {
		rep.At = snap.At.String()
	}
	add := func(t *change.Table, src verify.Side) {
		r, err := verify.Compare(ctx, t, src, dst, opt)
		if err != nil {
			r.Error = err.Error()
			r.Match = false
		}
		rep.Tables = append(rep.Tables, r)
		rep.Match = rep.Match && r.Match
	}
	for i, t := range tables {
		if i < len(c.Tables) && !c.Tables[i].Mirrored() {
			continue // feeds views only
		}
		add(t, src)
	}
	if len(c.Views) > 0 {
		// A view's table is compared with the view's SQL run in full over
		// the source at the same point; a view the running pipeline
		// stopped is not (its table keeps its last output), and says why.
		vc := c
		if running {
			stopped, err := stoppedViews(ctx, cl)
			if err != nil {
				return nil, err
			}
			vc = withoutViews(c, stopped)
			for _, v := range c.Views {
				if why, ok := stopped[viewID(v.Name)]; ok {
					rep.Tables = append(rep.Tables, verify.Result{Table: viewID(v.Name), Stopped: why})
					rep.Match = false
				}
			}
		}
		oracle, err := openViewOracle(ctx, vc, tables, snap.Tx)
		if err != nil {
			return nil, fmt.Errorf("evaluate the views over the source: %w", err)
		}
		defer oracle.Close()
		for _, t := range oracle.outputs {
			add(t, oracle)
		}
		for _, id := range oracle.overEvents {
			rep.Tables = append(rep.Tables, verify.Result{Table: id.String(), Match: true,
				Skipped: "a view over events: its rows come from an event stream, not from the source"})
		}
	}
	return rep, nil
}

// targetLag says how far a stopped pipeline's slot is behind the snapshot.
func targetLag(ctx context.Context, c *config.Config, at change.LSN) (string, error) {
	src, err := openSource(c, discardLog())
	if err != nil {
		return "", err
	}
	defer src.Close()
	st, err := src.Status(ctx)
	if err != nil {
		return "", err
	}
	if st.ConfirmedFlush >= at {
		return "sluice is not running; its slot had confirmed every change before the comparison point", nil
	}
	return fmt.Sprintf("sluice is not running and its slot is %s behind the source (confirmed %s, source at %s): differences may be changes not yet applied; run sluice and verify again",
		HumanBytes(int64(at-st.ConfirmedFlush)), st.ConfirmedFlush, at), nil
}

// remoteSide reads the target through the running process.
type remoteSide struct{ cl *admin.Client }

func (r remoteSide) Checksums(ctx context.Context, t *change.Table, buckets int) ([]verify.Bucket, error) {
	var out []verify.Bucket
	err := r.cl.Call(ctx, "checksums", callArgs{Schema: t, Buckets: buckets}, &out)
	return out, err
}

func (r remoteSide) BucketRows(ctx context.Context, t *change.Table, buckets, bucket, limit int) ([]verify.KeyRow, error) {
	var out []verify.KeyRow
	err := r.cl.Call(ctx, "bucketrows", callArgs{Schema: t, Buckets: buckets, Bucket: bucket, Limit: limit}, &out)
	return out, err
}

// stoppedViews asks the running pipeline which views stopped, and why, by
// their table ("schema.name").
func stoppedViews(ctx context.Context, cl *admin.Client) (map[string]string, error) {
	var rep StatusReport
	if err := cl.Status(ctx, &rep); err != nil {
		return nil, fmt.Errorf("read the running pipeline's status: %w", err)
	}
	out := map[string]string{}
	if rep.Stats != nil {
		for id, t := range rep.Stats.Tables {
			if t.Stopped != "" {
				out[id] = t.Stopped
			}
		}
	}
	return out, nil
}

// withoutViews is c without the views whose tables are in skip.
func withoutViews(c *config.Config, skip map[string]string) *config.Config {
	if len(skip) == 0 {
		return c
	}
	cc := *c
	cc.Views = nil
	for _, v := range c.Views {
		if _, ok := skip[viewID(v.Name)]; !ok {
			cc.Views = append(cc.Views, v)
		}
	}
	return &cc
}

// viewID is a view's table as status names it (schema public when the
// name has none, as the view engine reads it).
func viewID(name string) string {
	id, err := change.ParseTableID(name)
	if err != nil {
		return name
	}
	return id.String()
}
