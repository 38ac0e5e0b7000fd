// fake_test.go: an in-memory, scriptable Backend and BackendSession for
// the engine tests, and helpers to drive a Session.

package pmult

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
)

// step is what a fake backend answers to one event.
type step struct {
	Verdict Verdict
	Text    string
	Edits   []Edit
	Err     error
	Delay   time.Duration
	// Wait, when set, is received from before answering (or ctx ends).
	Wait <-chan struct{}
	// Panic, when set, makes the answer panic with it.
	Panic string
}

// fakeBackend is a Backend whose sessions answer from a script.
type fakeBackend struct {
	name    string
	caps    Caps
	openErr error
	// on is the answer per event kind (default: Continue).
	on map[Kind]step
	// seq holds answers consumed one by one before on is used.
	seq map[Kind][]step
	// hook, when set, decides the answer first (ok false: fall through).
	hook func(ev *Event) (step, bool)
	// openHook, when set, runs first in Open (without the lock held); an
	// error fails the open.
	openHook func(ctx context.Context, info OpenInfo) error

	mu       sync.Mutex
	opens    int
	sessions []*fakeSession
}

func newFake(name string, caps Caps) *fakeBackend {
	return &fakeBackend{name: name, caps: caps, on: map[Kind]step{}, seq: map[Kind][]step{}}
}

func (f *fakeBackend) Name() string { return f.name }

func (f *fakeBackend) Open(ctx context.Context, info OpenInfo) (BackendSession, error) {
	if f.openHook != nil {
		if err := f.openHook(ctx, info); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.openErr != nil {
		return nil, f.openErr
	}
	s := &fakeSession{f: f, offer: info.Offer}
	f.sessions = append(f.sessions, s)
	return s, nil
}

// events returns a copy of every event the backend's sessions got.
func (f *fakeBackend) events() []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Event
	for _, s := range f.sessions {
		out = append(out, s.got...)
	}
	return out
}

// kinds lists the kinds of the events got, as strings.
func (f *fakeBackend) kinds() []string {
	var out []string
	for _, ev := range f.events() {
		k := ev.Kind.String()
		if ev.Kind == KindRcpt && ev.RejectedRcpt {
			k += "(rej)"
		}
		out = append(out, k)
	}
	return out
}

func (f *fakeBackend) kindsString() string { return strings.Join(f.kinds(), " ") }

// headers returns "Name:Value" of every header event got.
func (f *fakeBackend) headers() []string {
	var out []string
	for _, ev := range f.events() {
		if ev.Kind == KindHeader {
			out = append(out, ev.Name+":"+ev.Value)
		}
	}
	return out
}

// body concatenates the body chunks got.
func (f *fakeBackend) body() string {
	var b bytes.Buffer
	for _, ev := range f.events() {
		if ev.Kind == KindBody {
			b.Write(ev.Chunk)
		}
	}
	return b.String()
}

func (f *fakeBackend) closes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.sessions {
		n += s.closed
	}
	return n
}

func (f *fakeBackend) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sessions {
		s.got = nil
	}
}

// answer picks the scripted answer for ev (f.mu held).
func (f *fakeBackend) answer(ev *Event) step {
	if f.hook != nil {
		if st, ok := f.hook(ev); ok {
			return st
		}
	}
	if q := f.seq[ev.Kind]; len(q) > 0 {
		f.seq[ev.Kind] = q[1:]
		return q[0]
	}
	return f.on[ev.Kind]
}

type fakeSession struct {
	f       *fakeBackend
	offer   Offer
	got     []Event
	closed  int
	pending *pending // posted, not yet awaited
	posts   int      // events delivered by Post
}

// pending is an event delivered and not yet answered.
type pending struct {
	st    step
	start time.Time
	err   error // delivered after close
}

func (s *fakeSession) Caps() Caps { return s.f.caps }

// deliver records ev and picks its answer.
func (s *fakeSession) deliver(ev *Event) *pending {
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
		p.err = errors.New("fake: event after close")
	}
	return p
}

// finish waits as scripted and answers.
func (s *fakeSession) finish(ctx context.Context, ev *Event, p *pending) (Reply, error) {
	if p.err != nil {
		return Reply{}, p.err
	}
	st := p.st
	if st.Panic != "" {
		panic(st.Panic)
	}
	if st.Wait != nil {
		select {
		case <-st.Wait:
		case <-ctx.Done():
			return Reply{}, ctx.Err()
		}
	}
	if d := time.Until(p.start.Add(st.Delay)); st.Delay > 0 && d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Reply{}, ctx.Err()
		}
	}
	if st.Err != nil {
		return Reply{}, st.Err
	}
	return Reply{Verdict: st.Verdict, Text: st.Text, Edits: st.Edits}, nil
}

func noAnswer(k Kind) bool { return k == KindAbort || k == KindQuit || k == KindQuitNC }

func (s *fakeSession) Send(ctx context.Context, ev *Event) (Reply, error) {
	p := s.deliver(ev)
	if noAnswer(ev.Kind) {
		return Reply{}, errors.Join(p.err, p.st.Err)
	}
	return s.finish(ctx, ev, p)
}

func (s *fakeSession) Post(ctx context.Context, ev *Event) (bool, error) {
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
	s.pending = p
	return true, nil
}

func (s *fakeSession) Await(ctx context.Context, ev *Event) (Reply, error) {
	p := s.pending
	s.pending = nil
	if p == nil {
		return Reply{}, errors.New("fake: Await without Post")
	}
	return s.finish(ctx, ev, p)
}

func (s *fakeSession) Close() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.closed++
	return nil
}

// logBuf is a concurrency-safe buffer for a text slog handler.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// allOffer offers every action and protocol feature.
var allOffer = Offer{
	Actions:       ActModify | ActQuarantine | ActSetSymList,
	Skip:          true,
	RejectedRcpts: true,
	LeadingSpace:  true,
	SymList:       true,
	Version:       6,
}

// harness is one engine session over fake backends.
type harness struct {
	t   *testing.T
	e   *Engine
	s   *Session
	log *logBuf
	neg Negotiated
	ctx context.Context
}

func slot(b *fakeBackend, p Policy) Slot { return Slot{Backend: b, Policy: p} }

func slots(bs ...*fakeBackend) []Slot {
	var out []Slot
	for _, b := range bs {
		out = append(out, Slot{Backend: b})
	}
	return out
}

func open(t *testing.T, e *Engine, offer Offer) *harness {
	t.Helper()
	h := &harness{t: t, e: e, log: &logBuf{}, ctx: context.Background()}
	h.s = e.NewSession("test", newLog(h.log))
	h.neg = h.s.Open(h.ctx, offer, nil)
	t.Cleanup(h.s.Close)
	return h
}

func (h *harness) do(ev *Event) Reply {
	h.t.Helper()
	return h.s.Handle(h.ctx, ev)
}

func (h *harness) connect() Reply {
	return h.do(&Event{Kind: KindConnect, Hostname: "client.example", Family: '4', Port: 2525, Address: "192.0.2.1"})
}
func (h *harness) helo() Reply { return h.do(&Event{Kind: KindHelo, Arg: "client.example"}) }
func (h *harness) mail() Reply {
	return h.do(&Event{Kind: KindMail, Args: []string{"<a@example.org>"}})
}
func (h *harness) rcpt(addr string) Reply {
	return h.do(&Event{Kind: KindRcpt, Args: []string{"<" + addr + ">"}})
}
func (h *harness) data() Reply { return h.do(&Event{Kind: KindData}) }
func (h *harness) header(name, value string) Reply {
	return h.do(&Event{Kind: KindHeader, Name: name, Value: value})
}
func (h *harness) eoh() Reply               { return h.do(&Event{Kind: KindEOH}) }
func (h *harness) bodyChunk(b string) Reply { return h.do(&Event{Kind: KindBody, Chunk: []byte(b)}) }
func (h *harness) eom() Reply               { return h.do(&Event{Kind: KindEOM}) }
func (h *harness) abort()                   { h.do(&Event{Kind: KindAbort}) }

// envelopeToData runs CONNECT … DATA, checking each answer is not an objection.
func (h *harness) envelopeToData() {
	h.t.Helper()
	for _, r := range []Reply{h.connect(), h.helo(), h.mail(), h.rcpt("b@example.net"), h.data()} {
		if r.Verdict.Objects() {
			h.t.Fatalf("envelope objected: %+v", r)
		}
	}
}

// message sends the given headers (name, value pairs), EOH, body and EOM.
func (h *harness) message(hdrs []string, body string) Reply {
	h.t.Helper()
	for i := 0; i+1 < len(hdrs); i += 2 {
		if r := h.header(hdrs[i], hdrs[i+1]); r.Verdict.Objects() {
			return r
		}
	}
	if r := h.eoh(); r.Verdict.Objects() {
		return r
	}
	if body != "" {
		if r := h.bodyChunk(body); r.Verdict.Objects() {
			return r
		}
	}
	return h.eom()
}

// editor is a Caps with every modifying action.
var editor = Caps{Actions: ActModify | ActQuarantine, Skip: true}

// reader is a Caps with no modifying action.
var reader = Caps{Skip: true}
