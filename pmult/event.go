// event.go: the common event stream: event kinds, events, verdicts,
// replies, message edits, and the capability sets negotiated on both sides.

package pmult

import "fmt"

// Kind is the kind of an event of the stream.
type Kind uint8

// Event kinds, in the order an SMTP session produces them.
const (
	KindNone Kind = iota
	KindConnect
	KindHelo
	KindMail
	KindRcpt
	KindData
	KindHeader
	KindEOH
	KindBody
	KindEOM
	KindAbort
	KindQuit
	KindQuitNC // quit, a new SMTP session follows on the same connection
	KindUnknown
	numKinds
)

var kindNames = [...]string{"none", "connect", "helo", "mail", "rcpt", "data", "header", "eoh",
	"body", "eom", "abort", "quit", "quit_nc", "unknown"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Envelope reports whether events of this kind are envelope events (fanned
// out to all backends in parallel).
func (k Kind) Envelope() bool {
	switch k {
	case KindConnect, KindHelo, KindMail, KindRcpt, KindData, KindUnknown:
		return true
	}
	return false
}

// KindSet is a set of event kinds.
type KindSet uint32

// Has reports whether k is in the set.
func (s KindSet) Has(k Kind) bool { return s&(1<<k) != 0 }

// With returns the set with k added.
func (s KindSet) With(k Kind) KindSet { return s | 1<<k }

// Kinds builds a set.
func Kinds(ks ...Kind) KindSet {
	var s KindSet
	for _, k := range ks {
		s = s.With(k)
	}
	return s
}

// MacroSet is one set of macros the MTA defined for a stage. For is the
// event kind it belongs to (the stage: a front end derives its dialect's
// stage code from it, a milter backend the command letter). Pairs are
// name, value, … in the MTA's order, names as the MTA sent them ("i",
// "{daemon_name}").
//
// Synth are name, value pairs the engine derived (Engine.Macros) for
// names the MTA did not send: only for backends that asked for them.
//
// In the event a backend gets, the set of the event's own stage also
// holds, in Pairs after the MTA's, the macros earlier backends in the
// chain assigned (Reply.Macros, assign.go) that it may see: a backend
// treats them as the MTA's.
type MacroSet struct {
	For   Kind
	Pairs []string
	Synth []string
}

// Event is one event of an SMTP session. Which fields are set depends on Kind.
// Events are shared between backends and must not be modified by them.
type Event struct {
	Kind   Kind
	Macros []MacroSet // macro sets that arrived since the previous event

	// Connect.
	Hostname string
	Family   byte // 'U', 'L', '4', '6' as in the milter protocol
	Port     uint16
	Address  string

	// Helo (the argument), Unknown (the command line).
	Arg string
	// Mail, Rcpt: the address as given, then the ESMTP parameters.
	Args []string
	// RejectedRcpt marks a Rcpt the MTA itself already rejected (sent only
	// to backends that asked for rejected recipients).
	RejectedRcpt bool

	// Header: name and raw value. The value includes its leading space
	// (exact bytes after the colon) and "\n" between folded lines.
	Name, Value string
	// Body: one chunk, shared, read-only, valid only until the Handle
	// (or Post) call that delivers it returns: the milter front reads
	// the next packet into the same buffer, so a backend keeps a copy.
	Chunk []byte
}

// Verdict is a backend's or the merged answer to an event.
type Verdict uint8

// Verdicts, weakest first. Discard > Reject > Tempfail > Continue.
const (
	Continue Verdict = iota
	Accept           // this backend is done (for the connection at CONNECT/HELO, else the message)
	Skip             // no more events of this kind
	Tempfail
	Reject
	Discard
	Shutdown // 421 and close (Postfix only; treated as tempfail elsewhere)
)

var verdictNames = [...]string{"continue", "accept", "skip", "tempfail", "reject", "discard", "shutdown"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// rank orders verdicts for merging: higher wins.
func (v Verdict) rank() int {
	switch v {
	case Discard:
		return 4
	case Reject:
		return 3
	case Shutdown:
		return 2
	case Tempfail:
		return 1
	}
	return 0
}

// Objects reports whether the verdict stops the command or message.
func (v Verdict) Objects() bool { return v.rank() > 0 }

// Reply is the answer to one event.
type Reply struct {
	Verdict Verdict
	// Text is a custom SMTP reply ("550 5.7.1 text", lines joined by
	// "\r\n" with "550-" continuations), for Tempfail, Reject and Shutdown.
	Text string
	// Edits are message modifications, at EOM only, in the order to apply.
	Edits []Edit
	// From names the backend whose reply this is (merged replies: the winner).
	From string
	// Macros are macro assignments for the backends after this one in
	// the chain (assign.go): valid with any verdict, at any event. The
	// engine consumes them; merged replies carry none.
	Macros []Assignment
	// Notes are policies the backend applied to the event (a check it
	// skipped, and why), kept in the decision record; the engine
	// consumes them.
	Notes []Note
}

// Assignment is a macro a backend sets for the backends after it in the
// chain (see assign.go for when and to whom it shows).
type Assignment struct {
	// Name is the macro's name, with or without braces ("{x_reputation}",
	// "x_reputation"; one character: "i").
	Name  string
	Value string
	// From is the first stage whose events show it (KindNone: the next
	// event on): a connection's assignment with From = KindMail shows
	// at MAIL and after of every message of the connection.
	From Kind
	// Override lets it replace a value the MTA sent (after the [macros]
	// tables); by default the MTA's value wins.
	Override bool
}

// Note is a policy a backend applied to one event, for the decision
// record (RecPolicy: What, the backend, the stage, Action).
type Note struct {
	What   string // one word: "macro_skip"
	Action string // a short token: "{spf_result}=pass"
}

// EditKind is the kind of a message modification.
type EditKind uint8

// Edit kinds.
const (
	EditAddHeader EditKind = iota + 1
	EditInsertHeader
	EditChangeHeader // empty Value deletes
	EditAddRcpt
	EditAddRcptPar
	EditDelRcpt
	EditChangeFrom
	EditReplaceBody
	EditQuarantine
)

var editNames = [...]string{"", "add_header", "insert_header", "change_header", "add_rcpt",
	"add_rcpt_par", "del_rcpt", "change_from", "replace_body", "quarantine"}

func (k EditKind) String() string {
	if int(k) < len(editNames) && k > 0 {
		return editNames[k]
	}
	return fmt.Sprintf("edit(%d)", uint8(k))
}

// Edit is one message modification. Header values follow the Event rule:
// they include their leading space. Index: insert position counted as the
// MTA counts it (its own hidden Received header included), or the 1-based
// occurrence for a change.
type Edit struct {
	Kind    EditKind
	Index   int
	Name    string
	Value   string // header value; quarantine reason
	Addr    string // recipient or sender
	Args    string // ESMTP arguments (AddRcptPar, ChangeFrom)
	HasArgs bool
	Body    []byte // ReplaceBody: the complete new body
}

// Actions is a set of modifications a backend may make or an MTA can carry
// out. The bit values equal the milter protocol's SMFIF_* flags.
type Actions uint32

// Action bits.
const (
	ActAddHeaders Actions = 1 << iota
	ActChangeBody
	ActAddRcpt
	ActDelRcpt
	ActChangeHeaders
	ActQuarantine
	ActChangeFrom
	ActAddRcptPar
	ActSetSymList

	// ActModify is every action that changes the message or its envelope.
	ActModify = ActAddHeaders | ActChangeBody | ActAddRcpt | ActDelRcpt | ActChangeHeaders |
		ActChangeFrom | ActAddRcptPar
)

// Need returns the action an edit kind needs.
func (k EditKind) Need() Actions {
	switch k {
	case EditAddHeader, EditInsertHeader:
		return ActAddHeaders
	case EditChangeHeader:
		return ActChangeHeaders
	case EditAddRcpt:
		return ActAddRcpt
	case EditAddRcptPar:
		return ActAddRcptPar
	case EditDelRcpt:
		return ActDelRcpt
	case EditChangeFrom:
		return ActChangeFrom
	case EditReplaceBody:
		return ActChangeBody
	case EditQuarantine:
		return ActQuarantine
	}
	return 0
}

// Offer is what the MTA side can do, as the front end negotiated it.
type Offer struct {
	Actions       Actions // modifications the MTA can carry out
	NoReply       KindSet // events the MTA lets filters leave unanswered
	Skip          bool    // the MTA understands Skip
	RejectedRcpts bool    // the MTA can send recipients it rejected
	LeadingSpace  bool    // header values reach the engine exactly (leading space kept)
	SymList       bool    // the MTA accepts per-stage macro lists
	// NoHiddenHeader: the MTA has no header of its own above those it
	// shows (Postfix and Sendmail hide their Received header, which counts
	// for insert indexes; the MeTA1 model does not).
	NoHiddenHeader bool
	Version        int // the MTA's protocol version (informational; 0 if none)
	// Front is the front end's dialect ("milter", "meta1"), which picks
	// the built-in macro table (MacroTables.Dialect).
	Front string
	// Listener is the name of the listener the MTA connected to ("" when
	// unnamed): its macro table applies, and {listener} is derived from it.
	Listener string
	// DeferContent: the MTA acts on a verdict given to a header, EOH or
	// body chunk only at end of message (Postfix, Sendmail), so the
	// engine lets it leave those unanswered (within NoReply) even where
	// backends answer them, and gives the verdict at EOM (see deferred).
	DeferContent bool
}

// Caps is what one backend negotiated, in engine terms.
type Caps struct {
	Actions       Actions
	NoEvent       KindSet // events it does not want
	NoReply       KindSet // events it will not answer
	Skip          bool
	RejectedRcpts bool
	Macros        map[Kind][]string // macro names it asked for, by stage
	// QuitNC: the session can take KindQuitNC and then serve a new SMTP
	// session (milter protocol 6). Without it the engine closes the
	// backend session at QUIT_NC and opens a new one for the next session.
	QuitNC bool
	// WaitEarlier are envelope stages where the backend gets the event
	// only once the other backends have answered it, so that it sees
	// the macros the backends before it set at that very event
	// (assign.go); it costs their latency. Empty: it runs with them.
	WaitEarlier KindSet
}

// Negotiated is the merged result of all backends, for the front end to
// answer the MTA's negotiation.
type Negotiated struct {
	Actions       Actions
	NoEvent       KindSet // events no backend (nor the engine) needs
	NoReply       KindSet // events nobody answers; subset of Offer.NoReply
	RejectedRcpts bool
	Macros        map[Kind][]string // union of requested macro lists, by stage
}
