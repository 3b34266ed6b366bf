package postgres

import "errors"

// Sentinel errors for the start-up checks, so callers can tell them apart;
// the wrapping error's text names the object and the fix.
var (
	ErrWALLevel       = errors.New("wal_level is not logical")
	ErrNoSlot         = errors.New("no free replication slot")
	ErrNoWALSender    = errors.New("no free WAL sender")
	ErrNoReplication  = errors.New("role may not replicate")
	ErrNoTable        = errors.New("table does not exist")
	ErrNoPrivilege    = errors.New("missing privilege")
	ErrNoKey          = errors.New("table has no usable key")
	ErrSlotActive     = errors.New("replication slot is in use")
	ErrForeignObjects = errors.New("slot or publication does not fit")
)
