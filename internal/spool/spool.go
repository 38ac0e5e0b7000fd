// spool.go: Spool (memory then file) and Budget (memory shared by spools).

package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
)

// Budget limits the bytes all spools sharing it keep in memory. It is safe
// for concurrent use.
type Budget struct {
	limit atomic.Int64
	used  atomic.Int64
}

// NewBudget returns a budget of limit bytes (<= 0: nothing in memory).
func NewBudget(limit int64) *Budget {
	b := &Budget{}
	b.SetLimit(limit)
	return b
}

// Limit returns the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.limit.Load() }

// SetLimit changes the budget's size (<= 0: nothing more in memory);
// bytes already reserved stay until released.
func (b *Budget) SetLimit(limit int64) { b.limit.Store(max(limit, 0)) }

// Used returns the bytes currently reserved.
func (b *Budget) Used() int64 { return b.used.Load() }

// reserve takes n bytes if they fit.
func (b *Budget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit.Load() {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *Budget) release(n int64) {
	if b.used.Add(-n) < 0 {
		panic("spool: budget released more than reserved")
	}
}

// Config tunes a Spool.
type Config struct {
	// Memory is how many bytes of the message may be kept in memory;
	// <= 0: none, every byte goes to the file.
	Memory int
	// Dir is where spool files are created; "": os.TempDir().
	Dir string
	// Budget, when set, is shared with other spools: memory is only used
	// while it has room.
	Budget *Budget
}

// Spool holds the chunks of one message. Its methods must be called from
// one goroutine. The zero value is not usable: see New.
type Spool struct {
	cfg      Config
	mem      []byte  // the first chunks, as long as they fit
	ends     []int64 // end offset of each chunk in the message
	memEnd   int     // chunks [0, memEnd) are in mem
	size     int64   // bytes written
	reserved int64   // bytes of cfg.Budget held (cap(mem))
	f        *os.File
	fname    string // set while the file still has a name to remove
	maxChunk int
	buf      []byte // read buffer for file chunks
	err      error  // sticky write error
}

// New returns an empty spool.
func New(cfg Config) *Spool { return &Spool{cfg: cfg} }

// Len returns the bytes written since the last Reset.
func (s *Spool) Len() int64 { return s.size }

// Chunks returns the number of chunks written since the last Reset.
func (s *Spool) Chunks() int { return len(s.ends) }

// InMemory returns the bytes kept in memory (the rest is in the file).
func (s *Spool) InMemory() int { return len(s.mem) }

// Spilled reports whether part of the message is in a file.
func (s *Spool) Spilled() bool { return s.f != nil }

// Write appends one chunk (a copy: chunk may be reused once Write
// returns). A failed write is sticky: the spool then holds an incomplete
// message and every later Write returns the same error until Reset.
func (s *Spool) Write(chunk []byte) error {
	if s.err != nil {
		return s.err
	}
	if len(chunk) == 0 {
		return nil
	}
	if s.f == nil && s.grow(len(chunk)) {
		s.mem = append(s.mem, chunk...)
		s.memEnd++
	} else if err := s.spill(chunk); err != nil {
		s.err = err
		return err
	}
	s.size += int64(len(chunk))
	s.ends = append(s.ends, s.size)
	s.maxChunk = max(s.maxChunk, len(chunk))
	return nil
}

// grow makes room in mem for n more bytes, within the per-message limit
// and the budget; false: the chunk goes to the file.
func (s *Spool) grow(n int) bool {
	need := len(s.mem) + n
	if need > s.cfg.Memory {
		return false
	}
	if need <= cap(s.mem) {
		return true
	}
	// From 512 bytes: most bodies between the MTA and the filters are
	// small, and a few doublings cost less than 4 KiB per message.
	c := min(max(2*cap(s.mem), need, 512), s.cfg.Memory)
	// The new buffer is reserved whole: the old one lives on during the copy.
	if b := s.cfg.Budget; b != nil && !b.reserve(int64(c)) {
		return false
	}
	m := make([]byte, len(s.mem), c)
	copy(m, s.mem)
	if s.cfg.Budget != nil {
		s.cfg.Budget.release(int64(cap(s.mem)))
	}
	s.mem = m
	s.reserved = int64(c)
	return true
}

// spill writes chunk to the file, creating it first.
func (s *Spool) spill(chunk []byte) error {
	if s.f == nil {
		dir := s.cfg.Dir
		if dir == "" {
			dir = os.TempDir()
		}
		f, err := os.CreateTemp(dir, "pmult-spool-*") // mode 0600
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.f = f
		if os.Remove(f.Name()) != nil {
			s.fname = f.Name() // removed by Reset
		}
	}
	if _, err := s.f.Write(chunk); err != nil {
		return fmt.Errorf("spool: writing %s: %w", s.f.Name(), err)
	}
	return nil
}

// Err returns the sticky write error, if any.
func (s *Spool) Err() error { return s.err }

// ErrIncomplete is returned by Range when a write had failed.
var ErrIncomplete = errors.New("spool: incomplete message (a write failed)")

// Range calls fn with each chunk in order until fn returns false. The
// slice is only valid during the call. It may be called many times.
func (s *Spool) Range(fn func(chunk []byte) bool) error {
	if s.err != nil {
		return ErrIncomplete
	}
	start := int64(0)
	for i, end := range s.ends {
		var chunk []byte
		if i < s.memEnd {
			chunk = s.mem[start:end]
		} else {
			if cap(s.buf) < s.maxChunk {
				s.buf = make([]byte, s.maxChunk)
			}
			off := start - int64(len(s.mem))
			chunk = s.buf[:end-start]
			if _, err := s.f.ReadAt(chunk, off); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("spool: reading %s: %w", s.f.Name(), err)
			}
		}
		if !fn(chunk) {
			return nil
		}
		start = end
	}
	return nil
}

// Reset empties the spool for the next message: the file is closed and
// removed, the memory released to the budget and dropped.
func (s *Spool) Reset() {
	if s.f != nil {
		s.f.Close()
		if s.fname != "" {
			os.Remove(s.fname)
		}
	}
	if s.cfg.Budget != nil && s.reserved > 0 {
		s.cfg.Budget.release(s.reserved)
	}
	*s = Spool{cfg: s.cfg}
}
