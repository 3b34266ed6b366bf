package app

import (
	"context"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/stream"
	"github.com/sluice-dev/sluice/internal/stream/kafka"
	"github.com/sluice-dev/sluice/internal/stream/kinesis"
)

// streamSink is the producer half's target, whichever the stream.
type streamSink struct {
	pipeline.Target
	stats   func() any       // for status
	figures metrics.Reporter // for /metrics
	close   func() error
}

// streamReader is the consumer half's source, whichever the stream.
type streamReader struct {
	src     pipeline.Source  // the reader itself, with its optional abilities
	stats   func() any       // for status
	figures metrics.Reporter // for /metrics
	// stage names the apply health of the warehouse it feeds in /metrics.
	stage string
	close func() error
}

// openStreamSink opens the configured stream's producer.
func openStreamSink(ctx context.Context, c *config.Config, log *slog.Logger) (*streamSink, error) {
	if k := c.Stream.Kafka; k != nil {
		sink, err := kafka.NewSink(ctx, kafka.SinkConfig{
			Connection:     kafkaConnection(k),
			Pipeline:       c.Pipeline,
			Database:       databaseOf(c.Source.URL),
			StateFile:      filepath.Join(c.StateDir, c.Pipeline+".kafka-producer.json"),
			DeadLetterFile: k.DeadLetterFile,
			MaxRecordBytes: int(k.MaxRecordBytes),
			// As for Kinesis: records Redshift could not parse are refused here.
			Refuse: redshiftRefuse(c),
			Logger: log,
		})
		if err != nil {
			return nil, err
		}
		return &streamSink{Target: sink, stats: func() any { return sink.Stats() }, figures: metrics.Live(sink.Stats), close: sink.Close}, nil
	}
	k := c.Stream.Kinesis
	sink, err := kinesis.NewSink(ctx, kinesis.SinkConfig{
		Connection:     kinesis.Connection{Stream: k.Stream, Region: k.Region, Endpoint: k.Endpoint},
		Pipeline:       c.Pipeline,
		Database:       databaseOf(c.Source.URL),
		StateFile:      filepath.Join(c.StateDir, c.Pipeline+".kinesis-producer.json"),
		DeadLetterFile: k.DeadLetterFile,
		// Records a Redshift consumer could not parse are refused here,
		// like records over the size limit, instead of vanishing there.
		Refuse: redshiftRefuse(c),
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return &streamSink{Target: sink, stats: func() any { return sink.Stats() }, figures: metrics.Live(sink.Stats), close: sink.Close}, nil
}

// openStreamReader opens the configured stream's reader, which finds its
// stored marks in marks (the consumer's target).
func openStreamReader(ctx context.Context, c *config.Config, marks stream.MarkStore, log *slog.Logger) (*streamReader, error) {
	lim := limitsOf(c)
	if k := c.Stream.Kafka; k != nil {
		rejects := k.RejectFile
		if rejects == "" {
			rejects = filepath.Join(c.StateDir, c.Pipeline+".kafka-rejects.jsonl")
		}
		rd, err := kafka.NewReader(ctx, kafka.ReaderConfig{Connection: kafkaConnection(k), Group: k.Group, RejectFile: rejects,
			BatchChanges: lim.batchChanges, Logger: log}, marks)
		if err != nil {
			return nil, err
		}
		return &streamReader{src: rd, stats: func() any { return rd.Stats() }, figures: metrics.Live(rd.Stats), stage: kafka.ConsumerStage, close: rd.Close}, nil
	}
	k := c.Stream.Kinesis
	rejects := k.RejectFile
	if rejects == "" {
		rejects = filepath.Join(c.StateDir, c.Pipeline+".kinesis-rejects.jsonl")
	}
	conn := kinesis.Connection{Stream: k.Stream, Region: k.Region, Endpoint: k.Endpoint}
	rd, err := kinesis.NewReader(ctx, kinesis.ReaderConfig{Connection: conn, RejectFile: rejects,
		BatchChanges: lim.batchChanges, Logger: log}, marks)
	if err != nil {
		return nil, err
	}
	return &streamReader{src: rd, stats: func() any { return rd.Stats() }, figures: metrics.Live(rd.Stats), stage: kinesis.ConsumerStage, close: rd.Close}, nil
}

// kafkaConnection turns the config's Kafka section into the transport's.
func kafkaConnection(k *config.Kafka) kafka.Connection {
	cn := kafka.Connection{Brokers: k.Brokers, Topic: k.Topic, ClientID: k.ClientID}
	if t := k.TLS; t != nil && t.Enabled {
		cn.TLS = &kafka.TLS{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	}
	if s := k.SASL; s != nil {
		cn.SASL = &kafka.SASL{Mechanism: s.Mechanism, Username: s.Username, Password: s.Password, Region: s.Region}
	}
	return cn
}

// stopped turns the error of a part stopped by shutdown into nil.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func databaseOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(p.Path, "/")
}
