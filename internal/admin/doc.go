// Package admin is the local HTTP endpoint of a running sluice and its
// client. DuckDB lets one process write a file, so `sluice status`, `sluice
// verify` and `sluice query` reach a running mirror through this endpoint
// instead of failing on the file lock. It binds to loopback unless told
// otherwise, and writes its address to a file the other commands read.
//
// A call's error crosses the boundary as {"code": ..., "error": ...}: the
// Code is what a client acts on (verify tells a process that cannot hold
// its target, CodeNoHold, from one that failed), the message what a person
// reads. A backend makes coded errors with Errorf or Wrap; CodeOf reads
// them on either side.
package admin
