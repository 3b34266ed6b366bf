// Package metrics exposes a running sluice's figures in the Prometheus text
// format. Each component describes its own figures as Families and reports
// their values through a Reporter, pulled at scrape time; this package
// knows none of them and no component knows Prometheus. A new component
// adds a Reporter next to it and is handed to Handler: nothing here
// changes, and nothing is counted twice.
package metrics

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Kind is how a figure moves.
type Kind int

const (
	Counter Kind = iota // only grows (since the process started)
	Gauge               // goes up and down
)

// A Family is one named figure, declared once by the component that
// reports it (a package-level variable): its full name, its help text, and
// the names of its labels after "pipeline", which every figure carries.
// Users' dashboards and alerts depend on all three.
type Family struct {
	Name   string
	Help   string
	Kind   Kind
	Labels []string
}

// Emit reports one value of a family, with a value for each of its
// Labels in order.
type Emit func(f *Family, value float64, labels ...string)

// Reporter is a component's figures: Report emits their current values.
// It is called at every scrape, possibly from several goroutines at once.
type Reporter interface {
	Report(emit Emit)
}

// ReporterFunc is a function used as a Reporter.
type ReporterFunc func(emit Emit)

func (f ReporterFunc) Report(emit Emit) { f(emit) }

// Live is a Reporter of the figures stats returns at each scrape (a
// component's Stats method, whose result reports itself).
func Live[S Reporter](stats func() S) Reporter {
	return ReporterFunc(func(emit Emit) { stats().Report(emit) })
}

// Handler serves the figures of one pipeline, from reporters, at /metrics.
func Handler(pipeline string, reporters ...Reporter) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{pipeline: pipeline, reporters: reporters, descs: map[*Family]*prometheus.Desc{}})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// collector turns reports into Prometheus metrics. It describes nothing up
// front (an unchecked collector): the families are known as they are
// reported. The registry still checks at each scrape that a family keeps
// one help, type and set of labels.
type collector struct {
	pipeline  string
	reporters []Reporter

	mu    sync.Mutex
	descs map[*Family]*prometheus.Desc
}

func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	emit := func(f *Family, v float64, labels ...string) {
		d := c.desc(f)
		if len(labels) != len(f.Labels) {
			// A component's bug: fail the scrape, naming it, rather than
			// the process.
			ch <- prometheus.NewInvalidMetric(d, fmt.Errorf("%s: %d label values for labels %v", f.Name, len(labels), f.Labels))
			return
		}
		m, err := prometheus.NewConstMetric(d, valueType(f.Kind), v, append([]string{c.pipeline}, labels...)...)
		if err != nil {
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	for _, r := range c.reporters {
		r.Report(emit)
	}
}

func (c *collector) desc(f *Family) *prometheus.Desc {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.descs[f]
	if d == nil {
		d = prometheus.NewDesc(f.Name, f.Help, append([]string{"pipeline"}, f.Labels...), nil)
		c.descs[f] = d
	}
	return d
}

func valueType(k Kind) prometheus.ValueType {
	if k == Counter {
		return prometheus.CounterValue
	}
	return prometheus.GaugeValue
}
