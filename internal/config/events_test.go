package config

import (
	"strings"
	"testing"
)

func TestParseEvents(t *testing.T) {
	c, err := Parse([]byte(`
source: {url: "postgres://u@db/shop"}
tables: [public.customers]
target: duckdb:shop.duckdb
events:
  - name: clicks
    kafka: {brokers: [k1:9092], topic: web.clicks}
    columns:
      - {name: user_id, type: bigint}
      - {name: url, type: text}
  - name: web.orders_placed
    kinesis: {stream: orders, endpoint: "http://127.0.0.1:4567"}
    keep: true
    columns: [{name: amount, type: "numeric(12,2)"}]
views:
  - name: click_facts
    sql: SELECT e.event_id, e.url, c.name FROM events.clicks e LEFT JOIN customers c ON c.id = e.user_id
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	tbls, err := c.EventTables()
	if err != nil {
		t.Fatal(err)
	}
	if tbls[0].ID().String() != "events.clicks" || tbls[1].ID().String() != "web.orders_placed" || len(tbls[0].Columns) != 4 {
		t.Fatalf("event tables %s %s %v", tbls[0].ID(), tbls[1].ID(), tbls[0].Columns)
	}
	if !c.Events[1].Keep || c.Events[0].Kafka.ClientID != "sluice" {
		t.Fatalf("events %+v", c.Events)
	}
}

func TestValidateEvents(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"  - {name: clicks, columns: [{name: a, type: text}]}", "events[0]: say where the events are: kafka: {brokers, topic} or kinesis: {stream}"},
		{"  - {name: clicks, kafka: {brokers: [k:1], topic: t}, kinesis: {stream: s}, columns: [{name: a, type: text}]}", "events[0] has both kafka and kinesis"},
		{"  - {name: clicks, kafka: {topic: t}, columns: [{name: a, type: text}]}", "events[0].kafka.brokers is empty"},
		{"  - {name: clicks, kafka: {brokers: [k:1], topic: t, group: g}, columns: [{name: a, type: text}]}", "events[0].kafka.group: event streams are read without a consumer group"},
		{"  - {name: clicks, kinesis: {}, columns: [{name: a, type: text}]}", "events[0].kinesis.stream is empty"},
		{"  - {name: clicks, kinesis: {stream: s}}", "events[0]: event stream events.clicks: declare its fields under columns"},
		{"  - {name: clicks, kinesis: {stream: s}, columns: [{name: a, type: money}]}", `events[0]: event stream events.clicks, column a: type "money"`},
		{"  - {name: public.customers, kinesis: {stream: s}, columns: [{name: a, type: text}]}", "events[0]: public.customers is also the name of tables[0]"},
		{"  - {name: clicks, kinesis: {stream: s}, columns: [{name: a, type: text}]}\n  - {name: events.clicks, kinesis: {stream: t}, columns: [{name: a, type: text}]}", "events[1]: events.clicks is also the name of events[0]"},
	} {
		c, err := Parse([]byte("source: {url: \"postgres://u@db/shop\"}\ntables: [public.customers]\ntarget: duckdb:x\nviews: [{name: v, sql: SELECT 1}]\nevents:\n"+tc.yaml+"\n"), env(nil))
		if err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.yaml, err, tc.want)
		}
	}
	c, _ := Parse([]byte("source: {url: \"postgres://u@db/shop\"}\ntables: [public.customers]\ntarget: duckdb:x\nevents: [{name: e, kinesis: {stream: s}, columns: [{name: a, type: text}]}]\n"), env(nil))
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "events: no view reads them") {
		t.Errorf("events without views: %v", err)
	}
}
