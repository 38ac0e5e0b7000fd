// cond.go: conditions on backends (which backends see which mail). A
// Condition is compiled at load (package internal/cond); the engine keeps
// the session's Facts and asks each backend's condition at every stage
// until it is decided.
//
// Semantics: a condition is decided at the first stage where its inputs
// are known (Condition.Eval returns Yes or No). Until then the backend
// gets the events, so it has the connect and envelope it expects, and its
// votes count. When it turns false the backend leaves quietly: within a
// message it gets ABORT (if it had MAIL) and nothing more of the message;
// for a condition on the connection only (Stage at HELO or before) the
// backend session is closed (QUIT) and the backend gets nothing more of
// the connection; a condition on the listener only is decided at open,
// and a false one means the backend is never opened. A backend excluded
// for the whole connection at CONNECT is never opened either, once the
// engine knows its capabilities (see "Deferred open" below). It votes nothing
// after that; the skip is logged at debug level and kept as a "condition"
// policy in the decision record. Conditions and evaluation mode combine:
// an evaluated backend is skipped the same way.
//
// Deferred open: the MTA negotiates before CONNECT, so the engine must
// answer with the union of its backends' capabilities before it can
// decide a condition on the client (address, name, HELO, connect-stage
// macros). The engine remembers each backend's last negotiated Caps
// (capsMemo, per slot and MTA offer; the engine's own, so a reload, which
// may change a backend, starts with none). A backend with a connection
// condition (Stage KindConnect or KindHelo) whose Caps are known is not
// opened at Session.Open: the negotiation with the MTA uses the
// remembered Caps, and at CONNECT the backend is opened only when its
// condition is not already false (it gets CONNECT as if opened before).
// The first session, with no Caps known, opens it at once. A backend
// opened late that asks for more than was negotiated with the MTA fails
// for the session (its failure action, one log line, see fits), and what
// it negotiated is remembered for the next sessions.
//
// Tunables and defaults:
//   capsMemoMax  8 MTA offers remembered per backend (more: the memo of
//                that backend starts again)

package pmult

import (
	"context"
	"maps"
	"sync"

	"github.com/mailmux/mailmux/macros"
)

// capsMemoMax bounds the offers remembered per backend (an MTA offers the
// same each time; a mix of fronts and versions gives a few).
const capsMemoMax = 8

// capsMemo remembers each backend's last negotiated Caps by slot and by
// the MTA's offer they were negotiated under (Offer.Listener aside).
type capsMemo struct {
	mu   sync.Mutex
	caps []map[Offer]Caps // by slot; nil until the first put
}

func memoKey(o Offer) Offer {
	o.Listener = ""
	return o
}

// get returns the Caps slot i last negotiated under offer o.
func (m *capsMemo) get(i int, o Offer) (Caps, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i >= len(m.caps) || m.caps[i] == nil {
		return Caps{}, false
	}
	c, ok := m.caps[i][memoKey(o)]
	return c, ok
}

// put remembers c for slot i (of n) under offer o.
func (m *capsMemo) put(i, n int, o Offer, c Caps) {
	c.Macros = maps.Clone(c.Macros)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.caps == nil {
		m.caps = make([]map[Offer]Caps, n)
	}
	if i >= len(m.caps) {
		return
	}
	if m.caps[i] == nil || len(m.caps[i]) >= capsMemoMax {
		m.caps[i] = make(map[Offer]Caps)
	}
	m.caps[i][memoKey(o)] = c
}

// deferOpen reports whether b's open waits for CONNECT: it has a
// connection condition and its Caps are known, which it then carries for
// the negotiation with the MTA.
func (s *Session) deferOpen(b *bstate) bool {
	c := b.slot.Policy.Condition
	if c == nil || c.Stage() == KindNone || c.Stage() > KindHelo {
		return false
	}
	caps, ok := s.e.memo.get(b.pos, s.offer)
	if !ok {
		return false
	}
	b.caps = caps
	return true
}

// connectOut reports whether b's connection condition is false with the
// facts known at CONNECT (the backend, not opened yet, is not opened).
func (s *Session) connectOut(b *bstate) bool {
	c := b.slot.Policy.Condition
	if c == nil || c.Stage() == KindNone || c.Stage() > KindHelo || s.facts.At == KindNone {
		return false
	}
	return c.Eval(&s.facts) == No
}

// Tri is the value of a condition with what is known so far.
type Tri uint8

// Condition values.
const (
	Unknown Tri = iota // not decided yet: its inputs come later
	Yes
	No
)

// Not negates t (Unknown stays Unknown).
func (t Tri) Not() Tri {
	switch t {
	case Yes:
		return No
	case No:
		return Yes
	}
	return Unknown
}

// Condition decides whether a backend takes part. Eval must not block,
// allocate needlessly or fail: everything that can fail is checked when
// the condition is compiled.
type Condition interface {
	// Eval returns the condition's value from the facts known so far.
	// It must return Yes or No once f.At has reached Stage.
	Eval(f *Facts) Tri
	// Stage is the latest stage whose facts the condition reads:
	// KindNone (listener only: decided at open), KindConnect or KindHelo
	// (the connection), or a message stage (decided again per message).
	Stage() Kind
	// String describes it, for logs.
	String() string
}

// Facts are what is known of the session at the current stage: a
// condition's input is known once At has reached the stage it comes
// from (KindData: the recipients are complete; KindEOH: the headers;
// KindEOM: the size).
type Facts struct {
	At       Kind // the current stage (within a message: MAIL .. EOM)
	Listener string
	Family   byte
	Address  string // client address (connect)
	Hostname string // client host name (connect)
	Helo     string
	Sender   string   // MAIL FROM address, brackets stripped
	Rcpts    []string // RCPT TO addresses so far, brackets stripped
	Headers  []Header // headers so far
	Size     int64    // header and body bytes so far
	// Macros holds every macro value seen in the session, by name
	// without braces ("daemon_name", "i", "auth_authen").
	Macros map[string]string
	// set: the macros earlier backends assigned that the backend whose
	// condition is asked sees (assign.go), name, value pairs; they come
	// before Macros (the engine left out those the MTA's value hides).
	set []string
	// msgNames: the names in Macros that came with a message stage's
	// set, forgotten at the next MAIL (a message's macros, the MTA's or
	// an earlier backend's, last until the message ends).
	msgNames []string
}

// Macro returns a macro's value (name with or without braces): what an
// earlier backend assigned (engine conditions, assign.go), else the
// MTA's.
func (f *Facts) Macro(name string) (string, bool) {
	if len(f.set) > 0 {
		if v, ok := macros.Lookup(f.set, name); ok {
			return v, ok
		}
	}
	v, ok := f.Macros[trimBraces(name)]
	return v, ok
}

func trimBraces(n string) string {
	if len(n) > 2 && n[0] == '{' && n[len(n)-1] == '}' {
		return n[1 : len(n)-1]
	}
	return n
}

// condFacts updates the facts from ev, before it is dispatched.
func (s *Session) condFacts(ev *Event) {
	if s.hasConds {
		s.facts.Note(ev)
	}
}

// Note updates the facts from ev (the engine does it before it
// dispatches ev; a backend that evaluates conditions itself, such as the
// rule filter, calls it for every event it gets).
func (f *Facts) Note(ev *Event) {
	if f.Macros == nil {
		f.Macros = make(map[string]string)
	}
	switch ev.Kind {
	case KindConnect:
		clear(f.Macros) // a new SMTP session (after QUIT_NC): nothing of the old one
		f.msgNames = f.msgNames[:0]
	case KindMail:
		for _, n := range f.msgNames {
			delete(f.Macros, n)
		}
		f.msgNames = f.msgNames[:0]
	}
	for _, m := range ev.Macros {
		msg := m.For >= KindMail && m.For <= KindEOM
		for i := 0; i+1 < len(m.Pairs); i += 2 {
			n := trimBraces(m.Pairs[i])
			if _, had := f.Macros[n]; msg && !had {
				f.msgNames = append(f.msgNames, n)
			}
			f.Macros[n] = m.Pairs[i+1]
		}
	}
	switch ev.Kind {
	case KindConnect:
		f.At = KindConnect
		f.Family, f.Address, f.Hostname = ev.Family, ev.Address, ev.Hostname
		f.Helo = ""
	case KindHelo:
		f.At = KindHelo
		f.Helo = ev.Arg
	case KindMail:
		f.At = KindMail
		f.Sender, f.Rcpts, f.Headers, f.Size = "", f.Rcpts[:0], f.Headers[:0], 0
		if len(ev.Args) > 0 {
			f.Sender = macros.StripBrackets(ev.Args[0])
		}
	case KindRcpt:
		f.At = KindRcpt
		if len(ev.Args) > 0 && !ev.RejectedRcpt {
			f.Rcpts = append(f.Rcpts, macros.StripBrackets(ev.Args[0]))
		}
	case KindData, KindEOH, KindBody, KindEOM:
		f.At = ev.Kind
		f.Size += int64(len(ev.Chunk))
	case KindHeader:
		f.At = KindHeader
		f.Headers = append(f.Headers, Header{Name: ev.Name, Value: ev.Value})
		f.Size += int64(len(ev.Name) + len(ev.Value) + 3)
	}
}

// condRcptRefused drops from the facts a recipient the merged reply
// refused (the MTA drops it): the conditions on the recipients decide on
// those of the message. A message condition decided at this RCPT may
// have counted it, so every one is asked again at the next stage.
func (s *Session) condRcptRefused(ev *Event, r Reply) {
	if !s.hasConds || ev.Kind != KindRcpt || ev.RejectedRcpt || len(ev.Args) == 0 ||
		(r.Verdict != Reject && r.Verdict != Tempfail && r.Verdict != Shutdown) {
		return
	}
	if n := len(s.facts.Rcpts); n > 0 {
		s.facts.Rcpts = s.facts.Rcpts[:n-1]
	}
	for _, b := range s.bs {
		b.condMsg = false
	}
}

// condOpen decides the conditions known at open (the listener): a
// backend whose condition is false there is never opened.
func (s *Session) condOpen() {
	s.facts = Facts{Listener: s.offer.Listener, At: KindNone}
	for _, b := range s.bs {
		c := b.slot.Policy.Condition
		if c == nil {
			continue
		}
		s.hasConds = true
		if s.listenerOut(b) {
			b.condOut = true
			b.doneConn = true
			s.recPolicy("condition", b, KindNone, "skip")
			s.log.Debug("backend not opened: its condition is false for this listener", "backend", b.name,
				"listener", s.offer.Listener, "condition", c.String())
		}
	}
}

// condCheck asks every undecided condition at ev's stage (after the
// facts of ev were noted) and makes the backends whose condition turned
// false leave. waiting: only those of the backends that wait for the
// others at this stage (asked after the others answered, assign.go);
// else only those of the others.
func (s *Session) condCheck(ctx context.Context, ev *Event, waiting bool) {
	if !s.hasConds {
		return
	}
	for _, b := range s.bs {
		c := b.slot.Policy.Condition
		if c == nil || b.dead || b.condOut || b.doneConn || b.waits(ev.Kind) != waiting {
			continue
		}
		connScope := c.Stage() <= KindHelo
		if connScope && b.condConn {
			continue
		}
		if !connScope && (b.condMsg || b.doneMsg || ev.Kind == KindConnect || ev.Kind == KindHelo || ev.Kind == KindUnknown) {
			continue
		}
		s.facts.set = nil
		if len(s.asg) > 0 {
			s.facts.set = s.visible(b, ev.Kind)
		}
		t := c.Eval(&s.facts)
		s.facts.set = nil
		switch t {
		case Yes:
			if connScope {
				b.condConn = true
			} else {
				b.condMsg = true
			}
		case No:
			s.condLeave(ctx, b, ev.Kind, connScope)
		}
	}
}

// condLeave makes b leave the connection (connScope) or the message.
func (s *Session) condLeave(ctx context.Context, b *bstate, k Kind, connScope bool) {
	s.recPolicy("condition", b, k, "skip")
	s.log.Debug("backend skipped by its condition", "backend", b.name, "stage", k.String(),
		"scope", map[bool]string{true: "connection", false: "message"}[connScope],
		"condition", b.slot.Policy.Condition.String())
	if connScope {
		b.doneConn = true
		b.condOut = true
		if b.sess != nil {
			sess := b.sess
			b.sess, b.pipe = nil, nil
			s.condClosing.Add(1)
			go func() { defer s.condClosing.Done(); sess.Close() }()
		}
		return
	}
	if b.inMsg && k != KindMail {
		if _, err := b.handle(ctx, &Event{Kind: KindAbort}); err != nil {
			s.failed(ctx, b, KindAbort, err)
		}
	}
	b.inMsg = false
	b.skip = KindNone
	b.doneMsg = true
}

// condNeeds is the events the engine must see to decide its conditions.
func (s *Session) condNeeds() KindSet {
	var need KindSet
	for _, b := range s.bs {
		c := b.slot.Policy.Condition
		if c == nil || b.dead {
			continue
		}
		st := c.Stage()
		for k := KindConnect; k <= st && k <= KindEOM; k++ {
			need = need.With(k)
		}
	}
	return need
}

// condNotOpened excludes b, not opened, from the connection by its
// condition at stage k.
func (s *Session) condNotOpened(b *bstate, k Kind) {
	b.condOut, b.doneConn = true, true
	s.recPolicy("condition", b, k, "skip")
	s.log.Debug("backend not opened: its condition is false for this connection", "backend", b.name,
		"stage", k.String(), "condition", b.slot.Policy.Condition.String())
}

// listenerOut reports whether b's condition, decided by the listener
// alone, excludes it from the whole session.
func (s *Session) listenerOut(b *bstate) bool {
	c := b.slot.Policy.Condition
	if c == nil || c.Stage() != KindNone {
		return false
	}
	f := Facts{Listener: s.offer.Listener}
	return c.Eval(&f) == No
}
