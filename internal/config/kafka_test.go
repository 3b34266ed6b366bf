package config

import (
	"strings"
	"testing"
)

func TestParseKafka(t *testing.T) {
	c, err := Parse([]byte(`
source: {url: "postgres://u@db/shop"}
tables: [public.orders]
target: duckdb:shop.duckdb
stream:
  role: consumer
  kafka:
    brokers: b-1.msk.example.com:9098, b-2.msk.example.com:9098
    topic: shop.changes
    group: sluice-shop
    tls: {}
    sasl: {mechanism: SCRAM-SHA-512, username: sluice, password: "${KAFKA_PASSWORD}"}
`), env(map[string]string{"KAFKA_PASSWORD": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Stream.Kafka
	if len(k.Brokers) != 2 || k.Brokers[1] != "b-2.msk.example.com:9098" || k.Topic != "shop.changes" || k.Group != "sluice-shop" {
		t.Errorf("kafka: %+v", k)
	}
	if k.TLS == nil || !k.TLS.Enabled || k.SASL.Password != "s3cret" || k.MaxRecordBytes != 1_000_000 || k.ClientID != "sluice" {
		t.Errorf("kafka tls %+v sasl %+v max %d", k.TLS, k.SASL, k.MaxRecordBytes)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestValidateKafka(t *testing.T) {
	for name, tc := range map[string]struct{ stream, want string }{
		"no brokers":      {`kafka: {topic: t}`, "stream.kafka.brokers is empty"},
		"no port":         {`kafka: {brokers: [b], topic: t}`, `stream.kafka.brokers[0] "b" is not host:port`},
		"no topic":        {`kafka: {brokers: ["b:9092"]}`, "stream.kafka.topic is empty"},
		"bad topic":       {`kafka: {brokers: ["b:9092"], topic: "a b"}`, "not a valid topic name"},
		"both streams":    {`kafka: {brokers: ["b:9092"], topic: t}, kinesis: {stream: s}`, "both kinesis and kafka"},
		"sasl mechanism":  {`kafka: {brokers: ["b:9092"], topic: t, sasl: {mechanism: GSSAPI}}`, `mechanism "GSSAPI" is not supported`},
		"sasl password":   {`kafka: {brokers: ["b:9092"], topic: t, sasl: {mechanism: PLAIN, username: u}}`, "needs username and password"},
		"iam without tls": {`kafka: {brokers: ["b:9098"], topic: t, tls: {enabled: false}, sasl: {mechanism: AWS_MSK_IAM}}`, "AWS_MSK_IAM needs TLS"},
		"half a cert":     {`kafka: {brokers: ["b:9092"], topic: t, tls: {cert_file: c.pem}}`, "cert_file and key_file go together"},
		"tiny records":    {`kafka: {brokers: ["b:9092"], topic: t, max_record_bytes: 10}`, "max_record_bytes must be at least 1KiB"},
	} {
		c, err := Parse([]byte("source: {url: \"postgres://u@db/shop\"}\ntables: [public.orders]\ntarget: duckdb:x.duckdb\nstream: {"+tc.stream+"}\n"), env(nil))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
