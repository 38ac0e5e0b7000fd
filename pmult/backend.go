// backend.go: what a backend is to the engine, and the per-backend policy.

package pmult

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// ErrDown is wrapped by a backend's Open error when the backend is known
// to be down and was not tried (circuit breaker). The engine applies the
// failure action as for any failure, but logs it at debug level: the
// backend itself logs when it goes down and comes back.
var ErrDown = errors.New("backend down")

// Backend hands out one BackendSession per MTA session.
type Backend interface {
	// Name is the backend's configured name, for logs.
	Name() string
	// Open connects and negotiates for one MTA session. It must honour
	// ctx and its own connect timeout.
	Open(ctx context.Context, info OpenInfo) (BackendSession, error)
}

// IdleOpener is implemented by backends that keep sessions across MTA
// sessions (connection reuse). OpenIdle hands out a kept session without
// blocking, or nil when none is kept (the engine then calls Open as
// usual); its ctx and info are Open's. The engine calls it on the
// session's own goroutine, before any Open.
type IdleOpener interface {
	OpenIdle(ctx context.Context, info OpenInfo) BackendSession
}

// IdleCloser is implemented by backend sessions that can end without
// blocking when nothing is in flight (a connection kept for reuse).
// CloseIdle ends the session as Close does and reports true, or does
// nothing and reports false; the engine calls it on the session's own
// goroutine, and Close (on a goroutine of its own) where it reports
// false.
type IdleCloser interface {
	CloseIdle() bool
}

// Retirer is implemented by backends that keep resources across MTA
// sessions (connections kept for reuse). Retire is called once, when a
// reload replaces the engine the backend belongs to: it closes what is
// idle and keeps nothing from the sessions that end after it.
type Retirer interface {
	Retire()
}

// OpenInfo is what a backend learns when a session opens.
//
// The ctx given to Open is the MTA session's: it is cancelled when the MTA
// session ends (the MTA went away), which is not the backend's fault (a
// circuit breaker counts it neither as a failure nor as a success).
type OpenInfo struct {
	Offer Offer
	// Deadline is the engine's open budget: the backend must be connected
	// and negotiated by then, or fail this session's open (zero: no
	// budget beyond the backend's own timeouts). Missing it is the
	// backend's failure: a wedged backend must not hold up the MTA's
	// negotiation, which the MTA itself times (Postfix: 30 s).
	Deadline time.Time
	// Progress is called when the backend asks for more time (milter
	// SMFIR_PROGRESS); the front end relays it to the MTA where allowed.
	Progress func()
	Log      *slog.Logger
	// Assigned are the macros (normalised names, no braces) that the
	// backends before this one in the chain may set (MacroSetter): a
	// macro it asks for that the MTA does not send may come from them.
	Assigned []string
}

// MacroSetter is implemented by backends whose sessions may set macros
// for the backends after them (Reply.Macros): SetsMacros names them
// (with or without braces), so that a later backend that asks for one
// the MTA does not send is not told to change the MTA's settings.
type MacroSetter interface {
	SetsMacros() []string
}

// BackendSession is one backend's side of one MTA session. Its methods are
// called from one goroutine at a time.
//
// Besides its verdict, text and edits, an answer can set macros for the
// backends after this one in the chain (Reply.Macros; when and to whom
// they show: assign.go) and note policies for the decision record
// (Reply.Notes). That is a Reply field, not an optional interface: the
// macros are computed while answering an event, Func backends get it
// for free, and the interface stays these three methods. A backend that
// must see at an envelope event what the ones before it set at that
// same event says so in its Caps (WaitEarlier).
//
// A session that does its work inside Handle (a lookup, a callout, a
// function) is run by the engine in a goroutine of its own for each event
// where several backends get it, so N synchronous backends cost the time
// of the slowest, not the sum. A session that can deliver an event and
// read the answer later (a milter connection) implements Pipeliner as
// well and is driven without goroutines.
type BackendSession interface {
	// Caps is what the backend negotiated.
	Caps() Caps
	// Handle delivers ev. For an event the backend answers, it waits for
	// the answer (within the backend's own timeouts) and returns it; for
	// other events it returns Reply{Verdict: Continue}. An error means the
	// backend broke (timeout, closed connection, protocol violation): the
	// engine drops it from the session and applies its failure action.
	Handle(ctx context.Context, ev *Event) (Reply, error)
	// Close ends the session (QUIT) and releases its resources.
	Close() error
}

// Pipeliner is implemented by backend sessions that can split Handle in
// two: the engine posts an event to every such backend, then awaits each
// answer, so they work in parallel without a goroutine per backend. At
// end of message, and for single targets, the engine calls Handle.
type Pipeliner interface {
	// Post is the first half of Handle: it delivers ev without waiting
	// and reports whether an answer will follow.
	Post(ctx context.Context, ev *Event) (answer bool, err error)
	// Await is the second half of Handle: it reads the answer to the
	// event last posted (called only when Post said an answer follows).
	Await(ctx context.Context, ev *Event) (Reply, error)
}

// Batcher is implemented by Pipeliners that can send several events in
// one write. After Hold, the Posts that follow leave their packets in a
// buffer (written early only when it grows large) until Flush or the next
// Await, which flushes first. The engine uses it where it need not wait
// for an answer before the next event: the content phase when the MTA
// reads no reply to it, and the replay to later backends at end of
// message; it awaits the answers in order after. Once a backend answers
// one of them with a verdict that ends the message for it (accept,
// reject, tempfail, discard), the engine awaits none of the rest: libmilter
// ignores every command of the message after such a verdict (engine.c:
// it falls back to its HELO state), and a Batcher must itself keep a
// filter that answers them anyway from being read out of step.
type Batcher interface {
	Hold()
	Flush() error
}

// Func returns a stateless Backend whose sessions answer every event with
// f, as http.HandlerFunc makes a Handler of a function: each MTA session
// gets a session that negotiated caps and calls f from Handle; Close does
// nothing. f is called for every event the session gets (ABORT included:
// its answer to it is ignored; QUIT_NC only if caps.QuitNC) and must be
// safe for concurrent use by several MTA sessions.
func Func(name string, caps Caps, f func(ctx context.Context, ev *Event) (Reply, error)) Backend {
	return &funcBackend{name: name, caps: caps, f: f}
}

type funcBackend struct {
	name string
	caps Caps
	f    func(ctx context.Context, ev *Event) (Reply, error)
}

func (b *funcBackend) Name() string { return b.name }

func (b *funcBackend) Open(ctx context.Context, info OpenInfo) (BackendSession, error) {
	return funcSession{b}, nil
}

type funcSession struct{ b *funcBackend }

func (s funcSession) Caps() Caps { return s.b.caps }

func (s funcSession) Handle(ctx context.Context, ev *Event) (Reply, error) { return s.b.f(ctx, ev) }

func (s funcSession) Close() error { return nil }

// FailAction is what a backend's failure means for the MTA session.
type FailAction uint8

// Failure actions.
const (
	FailTempfail FailAction = iota // default: 4xx
	FailAccept                     // skip this backend for the rest of the session
	FailReject                     // 5xx
	FailDiscard                    // discard the message
)

// ParseFailAction parses accept, tempfail, reject or discard.
func ParseFailAction(s string) (FailAction, error) {
	switch strings.ToLower(s) {
	case "", "tempfail":
		return FailTempfail, nil
	case "accept", "continue":
		return FailAccept, nil
	case "reject":
		return FailReject, nil
	case "discard":
		return FailDiscard, nil
	}
	return 0, fmt.Errorf("unknown failure action %q (want accept, tempfail, reject or discard)", s)
}

func (a FailAction) String() string {
	return [...]string{"tempfail", "accept", "reject", "discard"}[a]
}

// verdict is the vote a failed backend casts.
func (a FailAction) verdict() Verdict {
	switch a {
	case FailReject:
		return Reject
	case FailDiscard:
		return Discard
	case FailAccept:
		return Continue
	}
	return Tempfail
}

// Policy is one backend's place in the chain.
type Policy struct {
	OnFailure FailAction
	// Evaluate (shadow mode): the backend gets every event, its verdicts
	// and edits are logged, and nothing it says reaches the MTA. After a
	// verdict that would have ended the message (or, at CONNECT/HELO, the
	// connection) it gets no more of it, as from an MTA.
	Evaluate bool
	// Condition, when set, decides which sessions and messages the
	// backend takes part in (cond.go); nil: all of them.
	Condition Condition
	// WaitEarlier: envelope stages where the backend gets the event, and
	// its condition is asked, only once the other backends have answered
	// it, so that both see the macros the backends before it set at that
	// very event (assign.go), as Caps.WaitEarlier (the two are joined).
	WaitEarlier KindSet
}

// Slot is a configured backend with its policy, in chain order.
type Slot struct {
	Backend Backend
	Policy  Policy
}
