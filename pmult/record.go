// record.go: the decision record of each message: what every backend
// answered at each stage and how long it took, the edits each one made,
// every policy that fired (failure action, timeout, breaker skip,
// evaluation "would have", what a front noted: Session.Note), the macros
// backends set for the backends after them (assign.go), and the reply the
// MTA got from whom. A session builds the record in buffers it reuses
// from message to message; at the end of the message it logs one
// "decision" line (info level) and copies the record into the process's
// Recorder ring, where `pmult why` finds it. A front that answers the end
// of a message itself (the SMTP front: the next hop's reply) holds the
// record open past EOM and ends it with what the client got
// (HoldDecisions, EndMessage).
//
// Tunables and defaults:
//   Engine.QuietDecisions  false: one decision line per message, info level
//   Engine.Records         nil: no ring; the service's is decision_ring
//                          (default DefaultRecords) messages, process-owned
//   maxRecordEvents        256 events kept per record (the rest are counted;
//                          header and body continues of a backend count as one)
//   maxRecordValue         200 bytes of a header value kept per edit

package pmult

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultRecords is the default size of the service's decision ring.
const DefaultRecords = 1000

const (
	maxRecordEvents = 256
	maxRecordValue  = 200
)

// RecEvent is one backend's answer to one event (or its failure).
type RecEvent struct {
	At      time.Time
	Kind    Kind
	Backend string
	Verdict Verdict
	Text    string
	Latency time.Duration // of all N
	Err     string        // the failure, when it failed
	// N is how many answers this event stands for: consecutive header or
	// body answers "continue" of one backend are kept as one (At: the
	// last, Latency: the sum).
	N int
}

// RecEdit is one edit a backend made (or, evaluated or dropped, would have).
type RecEdit struct {
	Backend string
	Kind    EditKind
	Name    string // header name
	Value   string // header value or quarantine reason (first maxRecordValue bytes)
	Addr    string // recipient or sender
	Size    int    // replacement body bytes
	Note    string // "evaluation" (not applied), "dropped" (header gone); "": applied
}

// RecPolicy is a policy that fired for a message.
type RecPolicy struct {
	// What is one of failure, timeout, down (breaker skip: not tried),
	// would (evaluation verdict not applied: Action is the verdict),
	// would_edit (evaluation edit not applied: Action is the edit kind),
	// discard_ignored (DISCARD at connect or helo), condition (the
	// backend's condition was false: it left the message or connection,
	// or was not opened; Action is "skip"; see cond.go), set_macro (the
	// backend set a macro for the backends after it: Action is its name;
	// the value is in Record.Macros), would_set_macro (evaluation: not
	// set), what a backend noted itself (Reply.Notes, e.g. macro_skip),
	// or what the front noted (Session.Note, Backend "pmult"; the SMTP
	// front's: loop_marker, a message carrying its own loop marker relayed
	// unfiltered, Action "unfiltered"; quarantine, a quarantine carried out
	// as the reply, Action "tempfail" or "reject"; next_hop, the next hop
	// refused or failed after the data, Action its command, or "none").
	What    string
	Backend string
	Stage   Kind
	Action  string // the failure action, or the verdict that would have been
}

// Record is the decision record of one message (or of a connection
// refused before any message).
type Record struct {
	Session, QueueID string
	Hostname, Addr   string // the client
	Sender           string
	Rcpts, Rejected  int // recipients the engine let through / refused
	Start, End       time.Time
	// Ended is how the message ended: eom, abort, quit, or the stage
	// (connect, helo, mail, data, header, ...) whose reply ended it.
	Ended string
	// Reply is the verdict the MTA got at the end (accept: the message
	// went on), By the backend whose verdict it was ("" none; "pmult":
	// pmult's own, such as message too big), Text its reply text.
	Reply   Verdict
	By      string
	Text    string
	Stage   Kind
	Events  []RecEvent
	Dropped int // events not kept beyond maxRecordEvents
	Edits   []RecEdit
	Policy  []RecPolicy
	Macros  []RecMacro
}

// RecMacro is one macro a backend set for the backends after it.
type RecMacro struct {
	Backend  string
	Stage    Kind // the event whose answer set it
	Name     string
	Value    string // first maxRecordValue bytes
	Override bool
}

func (r *Record) client() string {
	switch {
	case r.Hostname == "" && r.Addr == "":
		return ""
	case r.Addr == "":
		return r.Hostname
	case r.Hostname == "" || r.Hostname == "["+r.Addr+"]":
		return "unknown[" + r.Addr + "]" // no name: as Postfix logs it
	}
	return r.Hostname + "[" + r.Addr + "]"
}

func (r *Record) reply() string {
	if r.Ended == "abort" || r.Ended == "quit" {
		return r.Ended
	}
	if !r.Reply.Objects() {
		return "accept"
	}
	return r.Reply.String()
}

// copyFrom copies src into r, reusing r's slices.
func (r *Record) copyFrom(src *Record) {
	ev, ed, po, ma := r.Events[:0], r.Edits[:0], r.Policy[:0], r.Macros[:0]
	*r = *src
	r.Events = append(ev, src.Events...)
	r.Edits = append(ed, src.Edits...)
	r.Policy = append(po, src.Policy...)
	r.Macros = append(ma, src.Macros...)
}

// WriteText writes the full record, one event a line, with times relative
// to the start.
func (r *Record) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "message qid=%s session=%s client=%s from=<%s> rcpts=%d", dash(r.QueueID), r.Session,
		dash(r.client()), r.Sender, r.Rcpts)
	if r.Rejected > 0 {
		fmt.Fprintf(&b, " rcpts_rejected=%d", r.Rejected)
	}
	fmt.Fprintf(&b, "\n  start %s end %s (%s)\n", r.Start.UTC().Format(time.RFC3339Nano),
		r.End.UTC().Format(time.RFC3339Nano), r.End.Sub(r.Start).Round(time.Microsecond))
	fmt.Fprintf(&b, "  reply %s at %s by %s", r.reply(), r.Ended, dash(r.By))
	if r.Text != "" {
		fmt.Fprintf(&b, " text %q", r.Text)
	}
	b.WriteString("\n  events:\n")
	for _, e := range r.Events {
		fmt.Fprintf(&b, "    +%-10s %-8s %-16s %-9s %s", e.At.Sub(r.Start).Round(time.Microsecond), e.Kind,
			e.Backend, verdictOrFailed(e), e.Latency.Round(time.Microsecond))
		if e.N > 1 {
			fmt.Fprintf(&b, " (%d answers)", e.N)
		}
		if e.Text != "" {
			fmt.Fprintf(&b, " text %q", e.Text)
		}
		if e.Err != "" {
			fmt.Fprintf(&b, " err %q", e.Err)
		}
		b.WriteByte('\n')
	}
	if r.Dropped > 0 {
		fmt.Fprintf(&b, "    (%d more events not kept)\n", r.Dropped)
	}
	if len(r.Edits) > 0 {
		b.WriteString("  edits:\n")
		for _, e := range r.Edits {
			fmt.Fprintf(&b, "    %-16s %s", e.Backend, e.Kind)
			switch e.Kind {
			case EditAddHeader, EditInsertHeader, EditChangeHeader:
				fmt.Fprintf(&b, " %s:%s", e.Name, e.Value)
			case EditAddRcpt, EditAddRcptPar, EditDelRcpt, EditChangeFrom:
				fmt.Fprintf(&b, " <%s>", strings.Trim(e.Addr, "<>"))
			case EditReplaceBody:
				fmt.Fprintf(&b, " %d bytes", e.Size)
			case EditQuarantine:
				fmt.Fprintf(&b, " %q", e.Value)
			}
			if e.Note != "" {
				fmt.Fprintf(&b, " (%s)", e.Note)
			}
			b.WriteByte('\n')
		}
	}
	if len(r.Macros) > 0 {
		b.WriteString("  macros set:\n")
		for _, m := range r.Macros {
			fmt.Fprintf(&b, "    %-16s %s at %s = %q", m.Backend, m.Name, stageName(m.Stage), m.Value)
			if m.Override {
				b.WriteString(" (override)")
			}
			b.WriteByte('\n')
		}
	}
	if len(r.Policy) > 0 {
		b.WriteString("  policies:\n")
		for _, p := range r.Policy {
			fmt.Fprintf(&b, "    %s %s at %s: %s\n", p.What, p.Backend, stageName(p.Stage), p.Action)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func verdictOrFailed(e RecEvent) string {
	if e.Err != "" {
		return "failed"
	}
	return e.Verdict.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stageName(k Kind) string {
	if k == KindNone {
		return "open"
	}
	return k.String()
}

// Recorder keeps the records of the last messages, a bounded ring owned
// by the process (shared by the engines it loads, as Metrics). It is safe
// for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	ring []Record
	next int
	n    int
}

// NewRecorder returns a ring of size records (size < 1: 1).
func NewRecorder(size int) *Recorder {
	return &Recorder{ring: make([]Record, max(size, 1))}
}

func (r *Recorder) add(rec *Record) {
	r.mu.Lock()
	r.ring[r.next].copyFrom(rec)
	r.next = (r.next + 1) % len(r.ring)
	r.n = min(r.n+1, len(r.ring))
	r.mu.Unlock()
}

// Find returns copies of the kept records whose queue id or session id is
// id, oldest first.
func (r *Recorder) Find(id string) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Record
	for i := r.n; i > 0; i-- {
		rec := &r.ring[(r.next-i+len(r.ring))%len(r.ring)]
		if id != "" && (rec.QueueID == id || rec.Session == id) {
			var c Record
			c.copyFrom(rec)
			out = append(out, c)
		}
	}
	return out
}

// WriteWhy writes the records Find(id) returns and reports whether there
// was one.
func (r *Recorder) WriteWhy(w io.Writer, id string) (bool, error) {
	recs := r.Find(id)
	for i := range recs {
		if err := recs[i].WriteText(w); err != nil {
			return true, err
		}
	}
	return len(recs) > 0, nil
}

// stageStat is one backend's answers at one stage of a message.
type stageStat struct {
	n      int32
	v      Verdict // the strongest verdict (or the last, when none objects)
	failed bool
	d      time.Duration
}

// recorder is a session's record in progress, reused across messages.
type recorder struct {
	rec     Record
	open    bool // a message is in progress (MAIL seen, not ended)
	connLen int  // events of the connection (connect, helo), kept for each message
	connPol int  // policies of the connection (open, connect, helo), kept likewise
	connMac int  // macros set at connect and helo, kept likewise
	stats   [][numKinds]stageStat
	edits   [][numEdits]int32
	buf     []byte
	bufs    *recBufs // from the engine's pool; back at Close
	// hold: the front ends each message accepted at EOM itself
	// (HoldDecisions); held: one is waiting for its EndMessage, with the
	// engine's EOM reply (the record's end should EndMessage not come).
	hold, held bool
	heldReply  Reply
}

// recBufs are a recorder's buffers, handed from a closed session to the
// next one through the engine's pool, so that a session does not grow its
// record from nothing.
type recBufs struct {
	events []RecEvent
	edits  []RecEdit
	policy []RecPolicy
	stats  [][numKinds]stageStat
	counts [][numEdits]int32
	buf    []byte
}

func (s *Session) recInit() {
	n := len(s.bs)
	rc := &s.rc
	rc.rec.Session = s.id
	if v, ok := s.e.recPool.Get().(*recBufs); ok {
		rc.bufs = v
		rc.rec.Events, rc.rec.Edits, rc.rec.Policy, rc.buf = v.events[:0], v.edits[:0], v.policy[:0], v.buf[:0]
		if cap(v.stats) >= n {
			rc.stats, rc.edits = v.stats[:n], v.counts[:n]
			clear(rc.stats)
			clear(rc.edits)
			return
		}
	}
	rc.stats = make([][numKinds]stageStat, n)
	rc.edits = make([][numEdits]int32, n)
}

// recRelease hands the record's buffers to the next session (Close).
func (s *Session) recRelease() {
	rc := &s.rc
	v := rc.bufs
	if v == nil {
		v = &recBufs{}
	}
	*v = recBufs{events: rc.rec.Events[:0], edits: rc.rec.Edits[:0], policy: rc.rec.Policy[:0],
		stats: rc.stats, counts: rc.edits, buf: rc.buf[:0]}
	// Strings the record pointed to are not kept alive by the pool.
	clear(v.events[:cap(v.events)])
	clear(v.edits[:cap(v.edits)])
	clear(v.policy[:cap(v.policy)])
	rc.bufs, rc.rec.Events, rc.rec.Edits, rc.rec.Policy, rc.stats, rc.edits, rc.buf = nil, nil, nil, nil, nil, nil, nil
	rc.rec.Macros = nil
	s.e.recPool.Put(v)
}

// recording reports whether the session keeps a record (not once closed).
func (s *Session) recording() bool {
	return (!s.e.QuietDecisions || s.e.Records != nil) && s.rc.stats != nil
}

// recConnect starts the record of a connection.
func (s *Session) recConnect(ev *Event) {
	rc := &s.rc
	rc.rec.Events = rc.rec.Events[:0]
	rc.rec.Edits = rc.rec.Edits[:0]
	rc.rec.Macros = rc.rec.Macros[:0]
	rc.rec.Dropped = 0
	rc.connLen, rc.connMac = 0, 0
	rc.rec.Hostname, rc.rec.Addr = ev.Hostname, ev.Address
	rc.rec.Start = time.Now()
	for i := range rc.stats {
		rc.stats[i] = [numKinds]stageStat{}
		rc.edits[i] = [numEdits]int32{}
	}
}

// recMail starts the record of a message (the connection's events kept).
func (s *Session) recMail(ev *Event) {
	rc := &s.rc
	if rc.open {
		s.recEnd("abort", Reply{}, KindNone)
	}
	rc.open = true
	rc.rec.Events = rc.rec.Events[:rc.connLen]
	rc.rec.Edits = rc.rec.Edits[:0]
	rc.rec.Policy = rc.rec.Policy[:rc.connPol]
	rc.rec.Macros = rc.rec.Macros[:rc.connMac]
	rc.rec.Dropped = 0
	rc.rec.Rcpts, rc.rec.Rejected = 0, 0
	rc.rec.Sender = ""
	if len(ev.Args) > 0 {
		rc.rec.Sender = strings.Trim(ev.Args[0], "<>")
	}
	if rc.rec.Start.IsZero() {
		rc.rec.Start = time.Now()
	}
	for i := range rc.stats {
		for k := KindMail; k < numKinds; k++ {
			if k != KindUnknown {
				rc.stats[i][k] = stageStat{}
			}
		}
		rc.edits[i] = [numEdits]int32{}
	}
}

// recAnswer records b's answer to ev (r.err: its failure) and its latency.
func (s *Session) recAnswer(b *bstate, k Kind, r *result) {
	rc := &s.rc
	if !s.recording() {
		return
	}
	st := &rc.stats[b.pos][k]
	st.n++
	st.d += r.dur
	if r.err != nil {
		st.failed = true
	} else if st.n == 1 || r.r.Verdict.rank() >= st.v.rank() {
		st.v = r.r.Verdict
	}
	if (k == KindHeader || k == KindBody) && r.err == nil && r.r.Verdict == Continue && r.r.Text == "" {
		ev := rc.rec.Events
		for i := len(ev) - 1; i >= max(len(ev)-len(s.bs), rc.connLen); i-- {
			if e := &ev[i]; e.Kind == k && e.Backend == b.name && e.Verdict == Continue && e.Err == "" && e.Text == "" {
				e.N++
				e.At = r.at
				e.Latency += r.dur
				return
			}
		}
	}
	if len(rc.rec.Events) >= maxRecordEvents {
		rc.rec.Dropped++
		return
	}
	e := RecEvent{At: r.at, Kind: k, Backend: b.name, Latency: r.dur, N: 1}
	if r.err != nil {
		e.Err = r.err.Error()
	} else {
		e.Verdict, e.Text = r.r.Verdict, r.r.Text
	}
	rc.rec.Events = append(rc.rec.Events, e)
	if !rc.open {
		rc.connLen = len(rc.rec.Events)
	}
}

func (s *Session) recPolicy(what string, b *bstate, k Kind, action string) {
	s.addPolicy(RecPolicy{What: what, Backend: b.name, Stage: k, Action: action})
}

func (s *Session) addPolicy(p RecPolicy) {
	if s.recording() {
		s.rc.rec.Policy = append(s.rc.rec.Policy, p)
		if !s.rc.open {
			s.rc.connPol = len(s.rc.rec.Policy)
		}
	}
}

// Note records a policy the front itself applied at stage k (the SMTP
// front's loop_marker: a message relayed without filtering) in the
// decision record, under the name "pmult" (as Record.By for pmult's own
// replies). Within a message it belongs to that message; before MAIL, to
// the connection (every message of it shows it). Call it from the
// goroutine that calls Handle, before the event that ends the message.
func (s *Session) Note(k Kind, n Note) {
	s.addPolicy(RecPolicy{What: n.What, Backend: "pmult", Stage: k, Action: n.Action})
}

// recMacro keeps a macro b set (assign.go), with a set_macro policy.
func (s *Session) recMacro(b *bstate, k Kind, name, value string, override bool) {
	if !s.recording() {
		return
	}
	if len(value) > maxRecordValue {
		value = value[:maxRecordValue]
	}
	s.rc.rec.Macros = append(s.rc.rec.Macros, RecMacro{Backend: b.name, Stage: k, Name: name, Value: value,
		Override: override})
	if !s.rc.open {
		s.rc.connMac = len(s.rc.rec.Macros)
	}
	s.recPolicy("set_macro", b, k, name)
}

// recNewSMTP forgets the connection's record at QUIT_NC: a new SMTP
// session follows.
func (s *Session) recNewSMTP() {
	rc := &s.rc
	rc.rec.Events, rc.rec.Policy, rc.rec.Macros = rc.rec.Events[:0], rc.rec.Policy[:0], rc.rec.Macros[:0]
	rc.connLen, rc.connPol, rc.connMac = 0, 0, 0
	rc.rec.Start = time.Time{}
}

func (s *Session) recEdit(b *bstate, e *Edit, note string) {
	if !s.recording() {
		return
	}
	if note == "" {
		s.rc.edits[b.pos][e.Kind]++
	}
	v := e.Value
	if len(v) > maxRecordValue {
		v = v[:maxRecordValue]
	}
	s.rc.rec.Edits = append(s.rc.rec.Edits, RecEdit{Backend: b.name, Kind: e.Kind, Name: e.Name, Value: v,
		Addr: e.Addr, Size: len(e.Body), Note: note})
}

// recDropped marks the edit last recorded for b as dropped.
func (s *Session) recDropped(b *bstate) {
	if !s.recording() || len(s.rc.rec.Edits) == 0 {
		return
	}
	e := &s.rc.rec.Edits[len(s.rc.rec.Edits)-1]
	if e.Note == "" {
		s.rc.edits[b.pos][e.Kind]--
	}
	e.Note = "dropped"
}

// failPolicy names the policy a failure fired: timeout or failure.
func failPolicy(err error) string {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	return "failure"
}

// recReply notes the merged reply to ev, ending the record where it ends
// the message (or, at connect and helo, the connection).
func (s *Session) recReply(ev *Event, r Reply) {
	rc := &s.rc
	if !s.recording() {
		return
	}
	switch ev.Kind {
	case KindRcpt:
		if r.Verdict.Objects() {
			rc.rec.Rejected++
		} else {
			rc.rec.Rcpts++
		}
	case KindConnect, KindHelo:
		if r.Verdict.Objects() && !rc.open {
			s.recEnd(ev.Kind.String(), r, ev.Kind)
		}
	case KindMail, KindData, KindHeader, KindEOH, KindBody:
		if r.Verdict.Objects() && rc.open {
			s.recEnd(ev.Kind.String(), r, ev.Kind)
		}
	case KindEOM:
		switch {
		case !rc.open:
		case rc.hold && !r.Verdict.Objects():
			rc.held, rc.heldReply = true, Reply{Verdict: r.Verdict, Text: r.Text, From: r.From}
		default:
			s.recEnd("eom", r, KindEOM)
		}
	}
}

// HoldDecisions tells the session that its front answers the end of each
// message itself, after EOM (the SMTP front: the next hop's reply, a
// quarantine carried out as 451 or 550): the record of a message the
// engine lets through at EOM stays open, Notes still join it, until
// EndMessage gives what the client got. Call it once, after Open.
func (s *Session) HoldDecisions() { s.rc.hold = true }

// EndMessage ends the record of the message held at EOM (HoldDecisions)
// with r, the reply the client got (its Verdict, Text, and From: the
// backend whose it was, or "pmult"), which is what the decision line and
// `pmult why` show. Without a held message it does nothing. A held
// message whose EndMessage does not come (the connection ends, or the
// next MAIL) ends with the engine's EOM reply.
func (s *Session) EndMessage(r Reply) {
	if s.rc.held && s.rc.open {
		s.recEnd("eom", r, KindEOM)
	}
}

// recEnd ends the record: the decision line, the ring, and the message's
// events dropped (the connection's kept for the next message).
func (s *Session) recEnd(how string, r Reply, k Kind) {
	rc := &s.rc
	rec := &rc.rec
	if rc.held {
		if how != "eom" { // ended otherwise: with the engine's EOM reply
			how, r, k = "eom", rc.heldReply, KindEOM
		}
		rc.held, rc.heldReply = false, Reply{}
	}
	rec.End = time.Now()
	rec.Ended = how
	rec.Reply, rec.By, rec.Text, rec.Stage = r.Verdict, "", "", k
	if r.Verdict.Objects() {
		rec.By, rec.Text = r.From, r.Text
		if rec.By == "" {
			rec.By = "pmult" // its own reply: message too big, spool error
		}
	}
	if how == "abort" || how == "quit" {
		rec.Reply = Continue
	}
	if r.Verdict.Objects() {
		// The message did not go on: its edits were not carried out.
		for i := range rec.Edits {
			if rec.Edits[i].Note == "" {
				rec.Edits[i].Note = "not applied: " + r.Verdict.String()
			}
		}
		for i := range rc.edits {
			rc.edits[i] = [numEdits]int32{}
		}
	}
	s.countDecision(rec)
	if !s.e.QuietDecisions && s.base.Enabled(context.Background(), slog.LevelInfo) {
		s.decisionLine()
	}
	if s.e.Records != nil {
		s.e.Records.add(rec)
	}
	rc.open = false
	rec.Events = rec.Events[:rc.connLen]
	rec.Policy = rec.Policy[:rc.connPol]
	rec.Macros = rec.Macros[:rc.connMac]
	rec.Start = time.Now()
	rec.QueueID = ""
}

// countDecision counts the message's outcome under the backend that
// decided it (none: pmult_decisions_total{backend=""}).
func (s *Session) countDecision(rec *Record) {
	i := replyIndex(rec)
	for _, b := range s.bs {
		if rec.By != "" && b.name == rec.By {
			b.mc.decided[i].Add(1)
			return
		}
	}
	s.m.undecided[i].Add(1)
}

// decisionLine logs the record as one line. The compact fields are built
// in the session's buffer.
func (s *Session) decisionLine() {
	rc := &s.rc
	rec := &rc.rec
	b := rc.buf[:0]
	// verdicts: name(stage=verdict/latency ...) per backend.
	for i, bs := range s.bs {
		start := len(b)
		for k := KindConnect; k < numKinds; k++ {
			st := &rc.stats[i][k]
			if st.n == 0 {
				continue
			}
			b = openItem(b, start, bs.name)
			b = append(b, k.String()...)
			b = append(b, '=')
			if st.failed {
				b = append(b, "failed"...)
			} else {
				b = append(b, st.v.String()...)
			}
			if st.n > 1 {
				b = append(b, '*')
				b = strconv.AppendInt(b, int64(st.n), 10)
			}
			b = append(b, '/')
			b = appendMillis(b, st.d)
		}
		if len(b) > start {
			b = append(b, ')')
		}
	}
	verdicts := string(b)
	b = b[:0]
	for i, bs := range s.bs {
		start := len(b)
		for e := 1; e < numEdits; e++ {
			n := rc.edits[i][e]
			if n == 0 {
				continue
			}
			b = openItem(b, start, bs.name)
			b = append(b, EditKind(e).String()...)
			b = append(b, '=')
			b = strconv.AppendInt(b, int64(n), 10)
		}
		if len(b) > start {
			b = append(b, ')')
		}
	}
	edits := string(b)
	b = b[:0]
	for i, p := range rec.Policy {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, p.What...)
		b = append(b, ':')
		b = append(b, p.Backend...)
		b = append(b, '@')
		b = append(b, stageName(p.Stage)...)
		b = append(b, '=')
		b = append(b, p.Action...)
	}
	policies := string(b)
	rc.buf = b
	attrs := [...]slog.Attr{
		slog.String("qid", dash(rec.QueueID)),
		slog.String("client", dash(rec.client())),
		slog.String("from", "<"+rec.Sender+">"),
		slog.Int("rcpts", rec.Rcpts),
		slog.Int("rcpts_rejected", rec.Rejected),
		slog.String("reply", rec.reply()),
		slog.String("at", rec.Ended),
		slog.String("by", dash(rec.By)),
		slog.String("text", rec.Text),
		slog.String("verdicts", verdicts),
		slog.String("edits", edits),
		slog.String("policies", policies),
	}
	// A record of our own, without the caller's PC (LogAttrs takes it
	// with runtime.Callers for every line; the text handler never prints
	// it). The caller checked that the level is enabled.
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "decision", 0)
	r.AddAttrs(attrs[:]...)
	s.base.Handler().Handle(context.Background(), r)
}

// appendMillis appends d in milliseconds, "ms" after: three decimals
// below 1 ms, one below 100 ms, none above.
// openItem starts one item of a backend's group "name(a b ...)" in b,
// whose group began at start: the first item opens the group (after a
// space if other groups precede it), later ones are space-separated.
func openItem(b []byte, start int, name string) []byte {
	if len(b) > start {
		return append(b, ' ')
	}
	if start > 0 {
		b = append(b, ' ')
	}
	b = append(b, name...)
	return append(b, '(')
}

func appendMillis(b []byte, d time.Duration) []byte {
	// Integer arithmetic: this runs for every backend and stage of every
	// message (strconv.AppendFloat was ~8 µs per message through Postfix).
	us := int64((max(d, 0) + 500*time.Nanosecond) / time.Microsecond)
	switch {
	case us < 1000: // 0.xxx
		b = append(b, '0', '.', byte('0'+us/100), byte('0'+us/10%10), byte('0'+us%10))
	case us < 99950: // x.y
		t := (us + 50) / 100
		b = strconv.AppendInt(b, t/10, 10)
		b = append(b, '.', byte('0'+t%10))
	default:
		b = strconv.AppendInt(b, (us+500)/1000, 10)
	}
	return append(b, "ms"...)
}
