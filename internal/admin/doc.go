// Package admin is the local HTTP endpoint of a running sluice and its
// client. DuckDB lets one process write a file, so `sluice status`, `sluice
// verify` and `sluice query` reach a running mirror through this endpoint
// instead of failing on the file lock. It binds to loopback unless told
// otherwise, and writes its address to a file the other commands read.
package admin
