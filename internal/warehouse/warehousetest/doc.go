// Package warehousetest is the conformance suite every warehouse target
// runs against a real database: operations, replays, snapshot hand-off,
// schema changes, a randomized model check, stream checkpoints and
// checksums. A target package calls Run from its tests with a Harness.
package warehousetest
