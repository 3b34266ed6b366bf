package kafka

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/change"
	core "github.com/sluice-dev/sluice/internal/stream"
)

// Every change lands on its key's partition in key order; a truncate is on
// every partition between what came before and after it.
func TestSinkPartitionsByKeyAndTruncatesEverywhere(t *testing.T) {
	c := newCluster(t, 1, "t", 4)
	s := newTestSink(t, conn(c, "t"), nil)
	first, _ := changes(200, 17, 0)
	trunc := change.Change{Op: change.OpTruncate, Table: itemsTable, Pos: change.Position{CommitLSN: 5000, LSN: 5000}}
	second, _ := changes(50, 17, 5000)
	b := append(append(append([]change.Change{}, first...), trunc), second...)
	if err := s.Apply(t.Context(), &change.Batch{Changes: b}); err != nil {
		t.Fatal(err)
	}
	recs := readTopic(t, c, "t")
	if len(recs) != 200+4+50 {
		t.Fatalf("topic holds %d records, want 254 (the truncate once per partition)", len(recs))
	}
	checkOnTopic(t, recs, append(first, second...), 4)
	perPartition := map[int32][]change.Change{}
	for _, r := range recs {
		perPartition[r.Partition] = append(perPartition[r.Partition], r.Change)
	}
	for p, cs := range perPartition {
		seen := false
		for _, ch := range cs {
			switch {
			case ch.Op == change.OpTruncate:
				seen = true
			case seen != (ch.Pos.CommitLSN >= 5000):
				t.Fatalf("partition %d: the change at %s is on the wrong side of the truncate", p, ch.Pos)
			}
		}
		if !seen {
			t.Fatalf("partition %d has no truncate", p)
		}
	}
	if st := s.Stats(); st.Partitions != 4 || st.Records != 254 {
		t.Errorf("stats %+v", st)
	}
}

// The partition count is pinned in the state file: partitions added to the
// topic do not move keys; a topic with fewer partitions is refused.
func TestSinkPinsThePartitionCount(t *testing.T) {
	c := newCluster(t, 1, "t", 2)
	s := newTestSink(t, conn(c, "t"), nil)
	cs, _ := changes(20, 20, 0)
	if err := s.Apply(t.Context(), &change.Batch{Changes: cs[:10]}); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(s.cl)
	if _, err := adm.CreatePartitions(t.Context(), 3, "t"); err != nil {
		t.Fatal(err)
	}
	s2 := newTestSink(t, conn(c, "t"), func(cfg *SinkConfig) { cfg.StateFile = s.cfg.StateFile })
	if err := s2.Apply(t.Context(), &change.Batch{Changes: cs[10:]}); err != nil {
		t.Fatal(err)
	}
	checkOnTopic(t, readTopic(t, c, "t"), cs, 2)

	other := newCluster(t, 1, "t", 1)
	s3 := newTestSink(t, conn(other, "t"), func(cfg *SinkConfig) { cfg.StateFile = s.cfg.StateFile })
	more, _ := changes(1, 1, 100)
	if err := s3.Apply(t.Context(), &change.Batch{Changes: more}); err == nil || !strings.Contains(err.Error(), "fewer than the 2") {
		t.Fatalf("Apply to a topic with fewer partitions: %v", err)
	}
	missing := newTestSink(t, conn(c, "nope"), nil)
	if err := missing.Apply(t.Context(), &change.Batch{Changes: more}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Apply to a missing topic: %v", err)
	}
}

// Produce requests that fail with retriable errors, and partition leaders
// that move between brokers while the sink produces: the idempotent
// producer retries, and every change is on the topic once, in key order.
func TestSinkRidesOutProduceErrorsAndLeaderMoves(t *testing.T) {
	c := newCluster(t, 3, "t", 6)
	var produces, failed atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if produces.Add(1)%3 != 0 {
			return nil, nil, false
		}
		// Every third produce request fails for every partition in it:
		// the leader moved (a retriable error the client answers by
		// refreshing metadata).
		failed.Add(1)
		r := req.(*kmsg.ProduceRequest)
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	s := newTestSink(t, conn(c, "t"), func(cfg *SinkConfig) {
		// The client refreshes metadata after a moved leader; by default
		// no more often than every 5s.
		cfg.Options = append(cfg.Options, kgo.MetadataMinAge(50*time.Millisecond))
	})
	all, _ := changes(3000, 101, 0)
	for i := 0; i < len(all); i += 300 {
		if i == 900 || i == 1800 {
			for p := range int32(6) {
				if err := c.MoveTopicPartition("t", p, (c.LeaderFor("t", p)+1)%3); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Apply(t.Context(), &change.Batch{Changes: all[i : i+300]}); err != nil {
			t.Fatal(err)
		}
	}
	if failed.Load() == 0 {
		t.Fatal("no produce request was failed: the test proves nothing")
	}
	recs := readTopic(t, c, "t")
	if len(recs) != len(all) {
		t.Errorf("topic holds %d records for %d changes: the idempotent producer should neither lose nor duplicate", len(recs), len(all))
	}
	checkOnTopic(t, recs, all, 6)
	t.Logf("%d produce requests, %d failed", produces.Load(), failed.Load())
}

// A broker that refuses records for good (not authorized) fails Apply with
// the fix, and the state file does not move; once the fault is gone the
// retried batch goes through.
func TestSinkRefusedProduceKeepsState(t *testing.T) {
	c := newCluster(t, 1, "t", 2)
	s := newTestSink(t, conn(c, "t"), func(cfg *SinkConfig) {
		cfg.Options = append(cfg.Options, kgo.RecordRetries(2))
	})
	cs, _ := changes(10, 5, 0)
	if err := s.Apply(t.Context(), &change.Batch{Changes: cs[:5]}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.cfg.StateFile)
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "t", Err: kerr.TopicAuthorizationFailed, Count: -1})
	err := s.Apply(t.Context(), &change.Batch{Changes: cs[5:]})
	if err == nil || !strings.Contains(err.Error(), "grant WRITE") {
		t.Fatalf("Apply while the broker refuses: %v, want the fix", err)
	}
	if after, _ := os.ReadFile(s.cfg.StateFile); string(after) != string(before) {
		t.Fatalf("the state file moved past records that were refused:\n%s", after)
	}
	h.Remove()
	if err := s.Apply(t.Context(), &change.Batch{Changes: cs[5:]}); err != nil {
		t.Fatal(err)
	}
	checkOnTopic(t, readTopic(t, c, "t"), cs, 2)
}

// A record over the limit: an error naming the setting, or a dead letter.
func TestSinkRecordOverTheLimit(t *testing.T) {
	c := newCluster(t, 1, "t", 1)
	big := change.Change{Op: change.OpInsert, Table: itemsTable, Pos: change.Position{CommitLSN: 9, LSN: 9},
		After: []change.Value{change.V(change.KindInt, "7"), change.V(change.KindText, strings.Repeat("x", 3000))}}
	s := newTestSink(t, conn(c, "t"), func(cfg *SinkConfig) { cfg.MaxRecordBytes = 2000 })
	var tooLarge *core.RecordTooLargeError
	if err := s.Apply(t.Context(), &change.Batch{Changes: []change.Change{big}}); !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), "stream.kafka.dead_letter_file") {
		t.Fatalf("Apply: %v", err)
	}
	dlq := t.TempDir() + "/dead.jsonl"
	s = newTestSink(t, conn(c, "t"), func(cfg *SinkConfig) { cfg.MaxRecordBytes, cfg.DeadLetterFile = 2000, dlq })
	if err := s.Apply(t.Context(), &change.Batch{Changes: []change.Change{big}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dlq); !strings.Contains(string(b), `"key":"[7]"`) || s.Stats().DeadLettered != 1 {
		t.Fatalf("dead-letter file:\n%s", b)
	}
}

func TestConnectionValidate(t *testing.T) {
	ok := Connection{Brokers: []string{"b:9092"}, Topic: "t"}
	for name, tc := range map[string]struct {
		mod  func(*Connection)
		want string
	}{
		"no brokers":    {func(c *Connection) { c.Brokers = nil }, "stream.kafka.brokers"},
		"no port":       {func(c *Connection) { c.Brokers = []string{"b"} }, "host:port"},
		"no topic":      {func(c *Connection) { c.Topic = "" }, "stream.kafka.topic"},
		"bad topic":     {func(c *Connection) { c.Topic = "a/b" }, "not valid"},
		"cert, no key":  {func(c *Connection) { c.TLS = &TLS{CertFile: "c.pem"} }, "key_file"},
		"no mechanism":  {func(c *Connection) { c.SASL = &SASL{} }, "mechanism is empty"},
		"bad mechanism": {func(c *Connection) { c.SASL = &SASL{Mechanism: "GSSAPI"} }, "not supported"},
		"no password":   {func(c *Connection) { c.SASL = &SASL{Mechanism: "SCRAM-SHA-512", Username: "u"} }, "username and password"},
	} {
		c := ok
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", name, err, tc.want)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}
