// Package app is sluice's application layer: it turns a *config.Config
// into running parts and answers the commands that look at them.
//
// Run is the one place that builds a pipeline, for every mode: direct
// (source → views → warehouse), producer (source → views → Kinesis or
// Kafka sink), consumer (stream reader → warehouse, through a pipeline of
// its own, or the Redshift merge schedule), or both halves in one process; with the retained-WAL watch and
// the admin endpoint, whose backend is Running. Verify, Status, Query and
// the Teardown functions are the other commands' logic; cmd/sluice only
// parses flags, dispatches and prints.
//
// Neighbours: it wires source/postgres, pipeline, view, stream/kinesis,
// stream/kafka and the warehouse packages together, serves through admin
// and metrics, and compares with verify. Nothing below it imports it.
package app
