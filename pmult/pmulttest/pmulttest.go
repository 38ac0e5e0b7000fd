// Package pmulttest provides utilities for testing code that uses the
// engine, as net/http/httptest does for handlers: Backend, an in-memory
// backend whose sessions record the events they get and answer from a
// script, Harness, one engine session driven event by event, and
// NoLeaks, the goroutine-leak check (leaks.go).
//
// It imports pmult only (and the standard library).
package pmulttest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/pmult"
)

// Step is what a Backend answers to one event.
type Step struct {
	Verdict pmult.Verdict
	Text    string
	Edits   []pmult.Edit
	// Macros are assignments for the backends after this one.
	Macros []pmult.Assignment
	// Notes are policies for the decision record.
	Notes []pmult.Note
	Err   error
	// Delay is waited from delivery before answering (or ctx ends).
	Delay time.Duration
	// Wait, when set, is received from before answering (or ctx ends).
	Wait <-chan struct{}
	// Panic, when set, makes the answer panic with it.
	Panic string
}

// Backend is a pmult.Backend whose sessions answer from a script. Set its
// fields before the sessions that should see them open; they are read
// under the Backend's lock.
type Backend struct {
	name string
	// Caps is what every session negotiates.
	Caps pmult.Caps
	// Sync makes the sessions synchronous: they do not implement
	// pmult.Pipeliner, so the engine runs them in goroutines.
	Sync bool
	// Batch makes the sessions pmult.Batchers: Posts may run ahead of
	// Awaits; answers are awaited in order, and after one that ends the
	// message (accept, reject, tempfail, discard, shutdown) the events
	// posted after it are dropped unanswered, as libmilter does.
	Batch bool
	// OpenErr, when set, fails every Open.
	OpenErr error
	// On is the answer per event kind (default: Continue).
	On map[pmult.Kind]Step
	// Seq holds answers consumed one by one before On is used.
	Seq map[pmult.Kind][]Step
	// Hook, when set, decides the answer first (ok false: fall through).
	// It is called with the Backend's lock held.
	Hook func(ev *pmult.Event) (st Step, ok bool)
	// OpenHook, when set, runs first in Open (without the lock held); an
	// error fails the open.
	OpenHook func(ctx context.Context, info pmult.OpenInfo) error
	// Entered, when set, is called (without the lock held) when a session
	// starts delivering an event, from the goroutine that delivers it.
	Entered func(ev *pmult.Event)

	mu       sync.Mutex
	opens    int
	sessions []*Session
}

// New returns a Backend named name whose sessions negotiate caps and
// answer Continue to everything.
func New(name string, caps pmult.Caps) *Backend {
	return &Backend{name: name, Caps: caps, On: map[pmult.Kind]Step{}, Seq: map[pmult.Kind][]Step{}}
}

// Name implements pmult.Backend.
func (f *Backend) Name() string { return f.name }

// Open implements pmult.Backend.
func (f *Backend) Open(ctx context.Context, info pmult.OpenInfo) (pmult.BackendSession, error) {
	if f.OpenHook != nil {
		if err := f.OpenHook(ctx, info); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.OpenErr != nil {
		return nil, f.OpenErr
	}
	s := &Session{f: f, offer: info.Offer}
	f.sessions = append(f.sessions, s)
	if f.Sync {
		return syncSession{s}, nil
	}
	if f.Batch {
		return batchSession{s}, nil
	}
	return s, nil
}

// Opens returns how many times Open was called.
func (f *Backend) Opens() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens
}

// Sessions returns the sessions opened so far.
func (f *Backend) Sessions() []*Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Session(nil), f.sessions...)
}

// Events returns a copy of every event the backend's sessions got.
func (f *Backend) Events() []pmult.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []pmult.Event
	for _, s := range f.sessions {
		out = append(out, s.got...)
	}
	return out
}

// Kinds lists the kinds of the events got, as strings ("rcpt(rej)" for a
// recipient the MTA rejected).
func (f *Backend) Kinds() []string {
	var out []string
	for _, ev := range f.Events() {
		k := ev.Kind.String()
		if ev.Kind == pmult.KindRcpt && ev.RejectedRcpt {
			k += "(rej)"
		}
		out = append(out, k)
	}
	return out
}

// KindsString is Kinds joined by spaces.
func (f *Backend) KindsString() string { return strings.Join(f.Kinds(), " ") }

// Headers returns "Name:Value" of every header event got.
func (f *Backend) Headers() []string {
	var out []string
	for _, ev := range f.Events() {
		if ev.Kind == pmult.KindHeader {
			out = append(out, ev.Name+":"+ev.Value)
		}
	}
	return out
}

// Body concatenates the body chunks got.
func (f *Backend) Body() string {
	var b bytes.Buffer
	for _, ev := range f.Events() {
		if ev.Kind == pmult.KindBody {
			b.Write(ev.Chunk)
		}
	}
	return b.String()
}

// Closes returns how many times the sessions were closed.
func (f *Backend) Closes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.sessions {
		n += s.closed
	}
	return n
}

// Reset forgets the events got so far.
func (f *Backend) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sessions {
		s.got = nil
	}
}

// answer picks the scripted answer for ev (f.mu held).
func (f *Backend) answer(ev *pmult.Event) Step {
	if f.Hook != nil {
		if st, ok := f.Hook(ev); ok {
			return st
		}
	}
	if q := f.Seq[ev.Kind]; len(q) > 0 {
		f.Seq[ev.Kind] = q[1:]
		return q[0]
	}
	return f.On[ev.Kind]
}

// Session is one session of a Backend. It implements pmult.Pipeliner
// (unless the Backend is Sync).
type Session struct {
	f       *Backend
	offer   pmult.Offer
	got     []pmult.Event
	closed  int
	pending []*pending // posted, not yet awaited, in order
	holds   int        // Hold calls (Batch)
	posts   int        // events delivered by Post
}

// pending is an event delivered and not yet answered.
type pending struct {
	st    Step
	start time.Time
	err   error // delivered after close
}

// Offer returns the offer the session was opened with.
func (s *Session) Offer() pmult.Offer { return s.offer }

// Posts returns how many events were delivered by Post.
func (s *Session) Posts() int {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.posts
}

// Caps implements pmult.BackendSession.
func (s *Session) Caps() pmult.Caps { return s.f.Caps }

// deliver records ev and picks its answer.
func (s *Session) deliver(ev *pmult.Event) *pending {
	if s.f.Entered != nil {
		s.f.Entered(ev)
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	c := *ev
	c.Chunk = bytes.Clone(ev.Chunk)
	c.Name = strings.Clone(ev.Name)
	c.Value = strings.Clone(ev.Value)
	c.Args = append([]string(nil), ev.Args...)
	s.got = append(s.got, c)
	p := &pending{st: s.f.answer(ev), start: time.Now()}
	if s.closed > 0 {
		p.err = errors.New("pmulttest: event after close")
	}
	return p
}

// finish waits as scripted and answers.
func (s *Session) finish(ctx context.Context, p *pending) (pmult.Reply, error) {
	if p.err != nil {
		return pmult.Reply{}, p.err
	}
	st := p.st
	if st.Panic != "" {
		panic(st.Panic)
	}
	if st.Wait != nil {
		select {
		case <-st.Wait:
		case <-ctx.Done():
			return pmult.Reply{}, ctx.Err()
		}
	}
	if d := time.Until(p.start.Add(st.Delay)); st.Delay > 0 && d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return pmult.Reply{}, ctx.Err()
		}
	}
	if st.Err != nil {
		return pmult.Reply{}, st.Err
	}
	return pmult.Reply{Verdict: st.Verdict, Text: st.Text, Edits: st.Edits, Macros: st.Macros, Notes: st.Notes}, nil
}

func noAnswer(k pmult.Kind) bool {
	return k == pmult.KindAbort || k == pmult.KindQuit || k == pmult.KindQuitNC
}

// Handle implements pmult.BackendSession.
func (s *Session) Handle(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	p := s.deliver(ev)
	if noAnswer(ev.Kind) {
		return pmult.Reply{}, errors.Join(p.err, p.st.Err)
	}
	return s.finish(ctx, p)
}

// Post implements pmult.Pipeliner.
func (s *Session) Post(ctx context.Context, ev *pmult.Event) (bool, error) {
	p := s.deliver(ev)
	s.f.mu.Lock()
	s.posts++
	s.f.mu.Unlock()
	if p.err != nil {
		return false, p.err
	}
	if noAnswer(ev.Kind) {
		return false, p.st.Err
	}
	s.pending = append(s.pending, p)
	return true, nil
}

// Await implements pmult.Pipeliner: the answer to the oldest event
// posted and not awaited yet.
func (s *Session) Await(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	if len(s.pending) == 0 {
		return pmult.Reply{}, errors.New("pmulttest: Await without Post")
	}
	p := s.pending[0]
	s.pending = s.pending[1:]
	r, err := s.finish(ctx, p)
	switch r.Verdict {
	case pmult.Accept, pmult.Reject, pmult.Tempfail, pmult.Discard, pmult.Shutdown:
		s.pending = nil // what was posted after it is ignored (libmilter)
	}
	return r, err
}

// Holds returns how many times the engine called Hold (Batch sessions).
func (s *Session) Holds() int {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.holds
}

// Close implements pmult.BackendSession.
func (s *Session) Close() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.closed++
	return nil
}

// syncSession hides a Session's Post and Await.
type syncSession struct{ s *Session }

func (s syncSession) Caps() pmult.Caps { return s.s.Caps() }
func (s syncSession) Handle(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	return s.s.Handle(ctx, ev)
}
func (s syncSession) Close() error { return s.s.Close() }

// batchSession is a Session that is a pmult.Batcher.
type batchSession struct{ *Session }

func (s batchSession) Hold() {
	s.f.mu.Lock()
	s.holds++
	s.f.mu.Unlock()
}

func (s batchSession) Flush() error { return nil }

// LogBuffer is a concurrency-safe buffer for a text slog handler.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// NewLog returns a debug-level text logger writing to w.
func NewLog(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// AllOffer offers every action and protocol feature.
var AllOffer = pmult.Offer{
	Actions:       pmult.ActModify | pmult.ActQuarantine | pmult.ActSetSymList,
	Skip:          true,
	RejectedRcpts: true,
	LeadingSpace:  true,
	SymList:       true,
	Version:       6,
}

// Editor is a Caps with every modifying action.
var Editor = pmult.Caps{Actions: pmult.ActModify | pmult.ActQuarantine, Skip: true}

// Reader is a Caps with no modifying action.
var Reader = pmult.Caps{Skip: true}

// Slot returns b in a slot with policy p.
func Slot(b pmult.Backend, p pmult.Policy) pmult.Slot { return pmult.Slot{Backend: b, Policy: p} }

// Slots returns the backends in slots with the default policy.
func Slots[B pmult.Backend](bs ...B) []pmult.Slot {
	var out []pmult.Slot
	for _, b := range bs {
		out = append(out, pmult.Slot{Backend: b})
	}
	return out
}

// Harness is one engine session, opened with an offer, driven event by
// event. Its log (debug level) is in Log; the session closes at the end
// of the test.
type Harness struct {
	T   testing.TB
	E   *pmult.Engine
	S   *pmult.Session
	Log *LogBuffer
	Neg pmult.Negotiated
	Ctx context.Context
}

// Open starts a session of e and opens it with offer.
func Open(t testing.TB, e *pmult.Engine, offer pmult.Offer) *Harness {
	t.Helper()
	h := &Harness{T: t, E: e, Log: &LogBuffer{}, Ctx: context.Background()}
	h.S = e.NewSession("test", NewLog(h.Log))
	h.Neg = h.S.Open(h.Ctx, offer, nil)
	t.Cleanup(h.S.Close)
	return h
}

// Do hands ev to the session.
func (h *Harness) Do(ev *pmult.Event) pmult.Reply {
	h.T.Helper()
	return h.S.Handle(h.Ctx, ev)
}

// Connect sends a CONNECT from client.example [192.0.2.1].
func (h *Harness) Connect() pmult.Reply {
	return h.Do(&pmult.Event{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Port: 2525,
		Address: "192.0.2.1"})
}

// Helo sends HELO client.example.
func (h *Harness) Helo() pmult.Reply {
	return h.Do(&pmult.Event{Kind: pmult.KindHelo, Arg: "client.example"})
}

// Mail sends MAIL FROM:<a@example.org>.
func (h *Harness) Mail() pmult.Reply {
	return h.Do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}})
}

// Rcpt sends RCPT TO:<addr>.
func (h *Harness) Rcpt(addr string) pmult.Reply {
	return h.Do(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<" + addr + ">"}})
}

// Data sends DATA.
func (h *Harness) Data() pmult.Reply { return h.Do(&pmult.Event{Kind: pmult.KindData}) }

// Header sends one header (value with its leading space).
func (h *Harness) Header(name, value string) pmult.Reply {
	return h.Do(&pmult.Event{Kind: pmult.KindHeader, Name: name, Value: value})
}

// EOH sends the end of the headers.
func (h *Harness) EOH() pmult.Reply { return h.Do(&pmult.Event{Kind: pmult.KindEOH}) }

// Body sends one body chunk.
func (h *Harness) Body(b string) pmult.Reply {
	return h.Do(&pmult.Event{Kind: pmult.KindBody, Chunk: []byte(b)})
}

// EOM sends the end of the message.
func (h *Harness) EOM() pmult.Reply { return h.Do(&pmult.Event{Kind: pmult.KindEOM}) }

// Abort sends ABORT.
func (h *Harness) Abort() { h.Do(&pmult.Event{Kind: pmult.KindAbort}) }

// EnvelopeToData runs CONNECT … DATA, failing the test if an answer is
// an objection.
func (h *Harness) EnvelopeToData() {
	h.T.Helper()
	for _, r := range []pmult.Reply{h.Connect(), h.Helo(), h.Mail(), h.Rcpt("b@example.net"), h.Data()} {
		if r.Verdict.Objects() {
			h.T.Fatalf("envelope objected: %+v", r)
		}
	}
}

// Message sends the given headers (name, value pairs), EOH, the body (if
// any) and EOM, and returns the first objection or the EOM reply.
func (h *Harness) Message(hdrs []string, body string) pmult.Reply {
	h.T.Helper()
	for i := 0; i+1 < len(hdrs); i += 2 {
		if r := h.Header(hdrs[i], hdrs[i+1]); r.Verdict.Objects() {
			return r
		}
	}
	if r := h.EOH(); r.Verdict.Objects() {
		return r
	}
	if body != "" {
		if r := h.Body(body); r.Verdict.Objects() {
			return r
		}
	}
	return h.EOM()
}

// MacroValues returns, for each event of kind k the backend got, the
// value of macro name in the event's macro sets ("" where it had none),
// and "-" where it had no such macro.
func (f *Backend) MacroValues(k pmult.Kind, name string) []string {
	var out []string
	for _, ev := range f.Events() {
		if ev.Kind != k {
			continue
		}
		v, ok := Macro(&ev, name)
		if !ok {
			v = "-"
		}
		out = append(out, v)
	}
	return out
}

// Macro returns the value of macro name (with or without braces) in ev's
// macro sets (the last one that has it), as a backend reading its events
// would see it.
func Macro(ev *pmult.Event, name string) (string, bool) {
	n := strings.Trim(name, "{}")
	var v string
	found := false
	for _, set := range ev.Macros {
		for i := 0; i+1 < len(set.Pairs); i += 2 {
			if strings.Trim(set.Pairs[i], "{}") == n {
				v, found = set.Pairs[i+1], true
			}
		}
	}
	return v, found
}
