package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// Source reads one database through one slot and publication.
type Source struct {
	cfg   Config
	log   *slog.Logger
	types *typeCache

	mu     sync.Mutex
	tables map[change.TableID]*tableMeta // the mirrored tables' current schemas
	roots  []string                      // the mirrored partitioned tables
	// resnap lists the tables that must be snapshotted again before the
	// stream goes on, with the reason; startChecked says whether the
	// start-up check for changes made while sluice was stopped ran.
	resnap       map[change.TableID]string
	startChecked bool

	confirmed atomic.Uint64 // highest LSN given to Confirm
	closed    atomic.Bool
}

var _ pipeline.Source = (*Source)(nil)

// tableMeta is the source's own knowledge of a mirrored table beside its
// change.Table: the decoders and type modifiers of its columns and its key.
type tableMeta struct {
	table       *change.Table
	types       []*typeInfo
	typmods     []int32
	keyNames    []string
	relid       uint32
	partitioned bool // relkind p: mirrored through its root

	// cat is what the catalog said of the table when it was last checked
	// (guarded by Source.mu): its storage files and columns' catalog rows.
	cat *catalogState
	// snapAt is the position of this process's last snapshot of the table
	// (0 if none): the stream drops the table's changes committed before
	// it, which the snapshot holds.
	snapAt atomic.Uint64
}

// New validates cfg and fills in defaults. It does no I/O.
func New(cfg Config) (*Source, error) {
	noPipeline := cfg.Pipeline == "" && (cfg.Slot == "" || cfg.Publication == "")
	cfg.setDefaults()
	if err := cfg.validate(noPipeline); err != nil {
		return nil, fmt.Errorf("source config: %w", err)
	}
	return &Source{cfg: cfg, log: cfg.Logger, types: newTypeCache(), tables: map[change.TableID]*tableMeta{}}, nil
}

// SlotName is the replication slot this source reads.
func (s *Source) SlotName() string { return s.cfg.Slot }

// PublicationName is the publication this source reads.
func (s *Source) PublicationName() string { return s.cfg.Publication }

// Confirm records that everything up to lsn is durable downstream. The next
// standby status update reports it to the server; positions only grow.
func (s *Source) Confirm(lsn change.LSN) {
	for {
		cur := s.confirmed.Load()
		if uint64(lsn) <= cur || s.confirmed.CompareAndSwap(cur, uint64(lsn)) {
			return
		}
	}
}

// Close marks the source closed; Snapshot and Stream refuse to start
// afterwards. Connections are owned by the calls that open them (Prepare,
// Snapshot, Stream) and closed when those return, so there is nothing else
// to release.
func (s *Source) Close() error {
	s.closed.Store(true)
	return nil
}

func (s *Source) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := s.cfg.connConfig()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to source database: %w", redact(err))
	}
	return conn, nil
}

func (s *Source) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	pc, err := s.cfg.replConfig()
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "53300" {
			return nil, fmt.Errorf("open replication connection: every WAL sender is in use (max_wal_senders): %w; stop unused replication clients or raise max_wal_senders in postgresql.conf and restart the server", ErrNoWALSender)
		}
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return nil, fmt.Errorf("open replication connection: %s: give the role the REPLICATION attribute (ALTER ROLE ... WITH REPLICATION)", pgErr.Message)
		}
		return nil, fmt.Errorf("open replication connection: %w", redact(err))
	}
	return conn, nil
}

// redact keeps a connect error's server message but drops the connection
// details pgconn adds, which can hold the password of the URL.
func redact(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return fmt.Errorf("server %s: %w", ce.Config.Host, errors.Unwrap(ce))
	}
	return err
}

func (s *Source) meta(id change.TableID) *tableMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tables[id]
}

// usable reports why Snapshot or Stream cannot start.
func (s *Source) usable() error {
	if s.closed.Load() {
		return errors.New("source is closed")
	}
	s.mu.Lock()
	n := len(s.tables)
	s.mu.Unlock()
	if n == 0 {
		return errors.New("source not prepared: call Prepare before Snapshot or Stream")
	}
	return nil
}
