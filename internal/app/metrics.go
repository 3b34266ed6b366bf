package app

import (
	"slices"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/metrics"
)

// viewStopped is the view engine's figure in /metrics. It is declared in
// the wiring, not in the view package, which calls nothing of metrics: the
// engine's Stopped is all it needs.
var viewStopped = &metrics.Family{Name: "sluice_view_stopped", Help: "1 while a view is stopped by a failure on a row (the mirror and the other views go on; sluice status has the reason; changing the view rebuilds it), 0 while it runs.", Kind: metrics.Gauge, Labels: []string{"view"}}

// viewFigures reports each of views (the configured ones, as their output
// tables) as stopped or running, from stopped (the engine's Stopped, which
// is safe from any goroutine). A view stopped and not among views is
// reported too.
func viewFigures(views []change.TableID, stopped func() map[change.TableID]string) metrics.Reporter {
	return metrics.ReporterFunc(func(emit metrics.Emit) {
		st := stopped()
		for _, id := range views {
			on := 0.0
			if _, ok := st[id]; ok {
				on = 1
			}
			emit(viewStopped, on, id.String())
		}
		for id := range st {
			if !slices.Contains(views, id) {
				emit(viewStopped, 1, id.String())
			}
		}
	})
}

// viewIDs are the output tables of the configured views.
func viewIDs(views []config.ViewSpec) []change.TableID {
	ids := make([]change.TableID, 0, len(views))
	for _, v := range views {
		if id, err := change.ParseTableID(v.Name); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}
