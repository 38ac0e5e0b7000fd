package logx

import (
	"io"
	"sync"
	"time"
)

// batchMax is how much Batch holds before it writes without waiting.
const batchMax = 32 << 10

// Batch is an io.Writer for a log stream (standard error read by
// journald, a pipe) that writes the lines of a busy daemon in fewer
// write(2) calls: a line written after a quiet spell (nothing written in
// the last delay) goes out at once; lines that follow it within delay
// are held and written together at most delay later, or as soon as
// 32 KiB are held. Each Write must be whole lines (a handler's record),
// so a line is never split between two writes. Flush writes what is
// held; NewText's handler calls it after every warning or error, so a
// line that explains a failure is not held. Close flushes and makes
// every later Write go straight through.
//
// What it trades: a line written under load reaches the reader up to
// delay late (its time= field is still when it was logged), and a
// process killed outright (SIGKILL, a fatal runtime error) loses what is
// held, at most delay's lines.
//
// Not for a writer that makes one message of each Write (log/syslog's).
type Batch struct {
	delay time.Duration
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	last  time.Time // when w was last written
	timer *time.Timer
	armed bool
	err   error // of a held write, returned by the next Write or Flush
	done  bool
}

// NewBatch returns a Batch writing to w, holding lines at most delay.
func NewBatch(w io.Writer, delay time.Duration) *Batch {
	b := &Batch{w: w, delay: delay}
	b.timer = time.AfterFunc(time.Hour, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.armed = false
		b.flushLocked()
	})
	b.timer.Stop()
	return b
}

func (b *Batch) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.err; err != nil {
		b.err = nil
		return 0, err
	}
	now := time.Now()
	if b.done || (len(b.buf) == 0 && now.Sub(b.last) >= b.delay) {
		b.last = now
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= batchMax {
		b.flushLocked()
		return len(p), b.takeErr()
	}
	if !b.armed {
		b.armed = true
		b.timer.Reset(b.delay)
	}
	return len(p), nil
}

// Flush writes the held lines now.
func (b *Batch) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.takeErr()
}

// Close flushes and stops holding lines; the Batch still writes.
func (b *Batch) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = true
	b.timer.Stop()
	b.armed = false
	b.flushLocked()
	return b.takeErr()
}

func (b *Batch) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	b.last = time.Now()
	if _, err := b.w.Write(b.buf); err != nil && b.err == nil {
		b.err = err
	}
	if cap(b.buf) > 4*batchMax {
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
}

func (b *Batch) takeErr() error {
	err := b.err
	b.err = nil
	return err
}
