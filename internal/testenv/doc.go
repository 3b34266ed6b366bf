// Package testenv starts the real servers sluice's tests and quickstart run
// against: a throwaway Postgres cluster (initdb into a temporary directory,
// wal_level=logical, a free loopback port) and a local Kinesis-API server;
// and what stands in for Redshift where none can run: the streaming views
// over Kinesis (StreamingView) and Kafka (KafkaStreamingView) landing into
// Postgres, and RedshiftProxy. Nothing here is a mock; everything is
// removed again by Stop.
package testenv
