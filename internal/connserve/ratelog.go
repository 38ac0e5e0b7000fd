// ratelog.go: a log line that would repeat once per connection (a refusal
// at the connection limit) becomes one line per interval with a count.

package connserve

import (
	"log/slog"
	"sync"
	"time"
)

// rateLog logs the first event of a burst at once and then at most one
// line per interval with the number of events since the last line.
type rateLog struct {
	log      *slog.Logger
	interval time.Duration
	msg      string
	attrs    []any

	mu    sync.Mutex
	n     int       // events not yet logged
	last  time.Time // when the last line was written
	timer *time.Timer
	peer  string // the latest peer, for the line
}

// add counts one event (peer may be empty).
func (r *rateLog) add(peer string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if peer != "" {
		r.peer = peer
	}
	now := time.Now()
	if r.timer == nil && now.Sub(r.last) >= r.interval {
		r.writeLocked(now)
		return
	}
	if r.timer == nil {
		r.timer = time.AfterFunc(r.interval-now.Sub(r.last), r.fire)
	}
}

func (r *rateLog) fire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	if r.n > 0 {
		r.writeLocked(time.Now())
	}
}

// flush writes the pending count now and stops the timer.
func (r *rateLog) flush() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if r.n > 0 {
		r.writeLocked(time.Now())
	}
}

func (r *rateLog) writeLocked(now time.Time) {
	args := append([]any{}, r.attrs...)
	args = append(args, "count", r.n)
	if !r.last.IsZero() {
		args = append(args, "since", now.Sub(r.last).Round(time.Millisecond).String())
	}
	if r.peer != "" {
		args = append(args, "last_peer", r.peer)
	}
	r.log.Warn(r.msg, args...)
	r.n, r.last, r.peer = 0, now, ""
}

// entry is one tracked connection; entries not yet Ready are in a list.
type entry struct {
	c          Conn
	peer       string // for the eviction line
	prev, next *entry
	listed     bool
}

// entryList is a doubly linked list of entries, oldest first.
type entryList struct {
	head, tail *entry
	n          int
}

func (l *entryList) push(e *entry) {
	e.prev, e.next, e.listed = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
	l.n++
}

func (l *entryList) remove(e *entry) {
	if !e.listed {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next, e.listed = nil, nil, false
	l.n--
}
