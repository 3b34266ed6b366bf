package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// A view joins a mirrored table with a Kafka topic, or a Kinesis stream, of JSON events, while
// the table changes and sluice is killed -9 and started again: every event
// lands exactly once, enriched with its customer as of a transaction
// boundary; later changes of a customer do not rewrite past events; bad
// records go to the reject file; verify compares the table and says the
// view over events is not compared.
func TestViewOverEventsThroughKills(t *testing.T) {
	t.Run("kafka", func(t *testing.T) {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "clicks"))
		if err != nil {
			t.Fatal(err)
		}
		defer cluster.Close()
		cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("clicks"),
			kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		viewOverEvents(t, fmt.Sprintf("kafka: {brokers: %q, topic: clicks", strings.Join(cluster.ListenAddrs(), ",")), func(v string) error {
			return cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(v)}).FirstErr()
		})
	})
	t.Run("kinesis", func(t *testing.T) {
		k := testenv.NewKinesalite(t)
		if err := k.CreateStream(context.Background(), "clicks", 2); err != nil {
			t.Fatal(err)
		}
		api := k.Client()
		n := 0
		viewOverEvents(t, fmt.Sprintf("kinesis: {stream: clicks, endpoint: %q, region: %s", k.Endpoint, k.Region), func(v string) error {
			n++
			_, err := api.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: aws.String("clicks"), Data: []byte(v), PartitionKey: aws.String(fmt.Sprint(n))})
			return err
		})
	})
}

// viewOverEvents runs the test over the event stream src ("kafka: {...",
// without its closing brace) that send writes records to.
func viewOverEvents(t *testing.T, src string, send func(string) error) {
	produce := func(vals ...string) {
		t.Helper()
		for _, v := range vals {
			if err := send(v); err != nil {
				t.Fatal(err)
			}
		}
	}

	e := newEnv(t, "duckdb")
	e.exec(`CREATE TABLE customers (id int PRIMARY KEY, name text, tier text);
INSERT INTO customers SELECT i, 'c' || i, 'basic' FROM generate_series(1, 50) i`)
	rejects := filepath.Join(e.dir, "clicks.rejects.jsonl")
	cfg := filepath.Join(e.dir, "sluice.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.customers]
events:
  - name: clicks
    %s, reject_file: %q}
    columns:
      - {name: user_id, type: bigint}
      - {name: url, type: text}
views:
  - name: click_facts
    sql: |
      SELECT e.event_id, e.user_id, e.url, c.name AS customer_name
      FROM events.clicks e LEFT JOIN public.customers c ON c.id = e.user_id
target: %q
state_dir: %q
batch: {max_changes: 200, interval: 50ms}
`, e.name, e.src, src, rejects, e.target, filepath.Join(e.dir, "state")))
	query := func(q string) string {
		out, _ := e.sluice("query", "--config", cfg, q)
		return out
	}
	waitQuery := func(what, q, want string, p *proc) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			out := query(q)
			if strings.Contains(out, want) {
				return
			}
			if time.Now().After(deadline) || p.exited() {
				t.Fatalf("%s: %q not in\n%s\nsluice:\n%s", what, want, out, p.out.String())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}

	// Events (users 51-60 have no customer) and customer renames flow
	// while sluice is killed and started again.
	const n = 1500
	p := e.start("run", "--config", cfg)
	e.waitRunning(p)
	rng := rand.New(rand.NewPCG(3, 3))
	sent := 0
	for round := 0; round < 3; round++ {
		for i := 0; i < n/3; i++ {
			sent++
			produce(fmt.Sprintf(`{"user_id": %d, "url": "/p/%d"}`, 1+sent%60, sent))
			if sent%50 == 0 {
				e.exec(fmt.Sprintf(`UPDATE customers SET name = name || '+' WHERE id = %d`, 1+rng.IntN(50)))
			}
			if sent == 100 {
				produce(`{"user_id": "seven"}`, `not json`)
			}
		}
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		p.kill()
		t.Logf("kill -9, round %d, %d events sent", round+1, sent)
		p = e.start("run", "--config", cfg)
		e.waitRunning(p)
	}
	count := `SELECT 'rows=' || count(*) || ' ids=' || count(DISTINCT event_id) || ' joined=' || count(customer_name) FROM public.click_facts`
	// 1 user in 6 (51..60 of 1..60) has no customer: 1250 of 1500 joined.
	waitQuery("every event exactly once", count, fmt.Sprintf("rows=%d ids=%d joined=%d", n, n, n-n/6), p)
	if out := query(`SELECT 'bad=' || count(*) FROM public.click_facts WHERE customer_name NOT LIKE 'c' || user_id || '%'`); !strings.Contains(out, "bad=0") {
		t.Errorf("an event joined another customer:\n%s", out)
	}

	// A customer's later change does not rewrite its past events; the next
	// event sees it.
	e.exec(`UPDATE customers SET name = 'zed' WHERE id = 7`)
	waitQuery("the mirror", `SELECT 'name=' || name FROM public.customers WHERE id = 7`, "name=zed", p)
	produce(`{"user_id": 7, "url": "/after"}`)
	waitQuery("the next event", `SELECT 'after=' || customer_name FROM public.click_facts WHERE url = '/after'`, "after=zed", p)
	if out := query(`SELECT 'zeds=' || count(*) FROM public.click_facts WHERE customer_name = 'zed'`); !strings.Contains(out, "zeds=1") {
		t.Errorf("past events were rewritten:\n%s", out)
	}

	rej, err := os.ReadFile(rejects)
	if err != nil || strings.Count(string(rej), "\n") != 2 || !strings.Contains(string(rej), "field user_id") {
		t.Errorf("reject file (%v):\n%s", err, rej)
	}
	out, code := e.sluice("verify", "--config", cfg)
	if code != 0 || !strings.Contains(out, "public.click_facts") || !strings.Contains(out, "not compared: a view over events") || !strings.Contains(out, "public.customers") {
		t.Errorf("verify (exit %d):\n%s", code, out)
	}
	p.stop(t)
}
