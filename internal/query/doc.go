// Package query runs one person's read-only SQL statement against a mirror
// (`sluice query`, and the admin endpoint's /query): the sandbox that keeps
// a statement that tries to write from changing anything, and the bounded,
// JSON-friendly Result it returns. internal/admin carries a Result over
// HTTP; internal/app picks the warehouse.
package query
