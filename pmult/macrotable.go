// macrotable.go: the engine's side of the macro tables (issue 12). Before
// an event is fanned out, the macro set of its stage goes through the
// built-in table of the front end's dialect, the global table and the
// table of the listener the MTA came in on (macros.Table: rename, alias,
// set, default, drop); then the macros pmult can derive from what it knows
// of the session (macros.Derivable) and the MTA did not send are put in
// the set's Synth pairs. Synth pairs are for backends that asked for those
// names at that stage (a milter backend picks them by its SMFIM lists); a
// backend that asked for nothing gets Pairs, what the MTA sent as
// translated.
//
// Tunables and defaults: Engine.Macros nil means no translation and no
// synthesis (events pass as the front end made them).

package pmult

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/mailmux/mailmux/macros"
)

// MacroTables are the configured translation tables.
type MacroTables struct {
	// Dialect is the built-in table of each front end, by Offer.Front
	// ("milter", "meta1"); a front end not in it gets none.
	Dialect map[string]*macros.Table
	// Global applies to every session, after the dialect's table.
	Global *macros.Table
	// Listener applies to sessions of the listener of that name
	// (Offer.Listener), after Global.
	Listener map[string]*macros.Table
	// Version is the value of {mult_version}.
	Version string

	chains sync.Map // front + "\x00" + listener: *macroChain, made once
}

// macroChain is the table one session goes through (dialect, global,
// listener), with what it offers at each stage, made once per front end
// and listener and shared by their sessions.
type macroChain struct {
	tab     *macros.Table
	offered [macros.NumStages][]string
}

// table returns the chain for sessions of front and listener.
func (m *MacroTables) table(front, listener string) *macroChain {
	key := front + "\x00" + listener
	if c, ok := m.chains.Load(key); ok {
		return c.(*macroChain)
	}
	c := &macroChain{tab: macros.Chain(m.Dialect[front], m.Global, m.Listener[listener])}
	for st := range macros.NumStages {
		c.offered[st] = c.tab.Offered(st)
	}
	got, _ := m.chains.LoadOrStore(key, c)
	return got.(*macroChain)
}

// derivWire are macros.DerivableNames in wire form, and derivAt the ones
// pmult can derive at each stage (bit i: DerivableNames[i]).
var derivWire, derivAt = func() ([]string, [macros.NumStages]uint32) {
	w := make([]string, len(macros.DerivableNames))
	var at [macros.NumStages]uint32
	for i, n := range macros.DerivableNames {
		w[i] = macros.Wire(n)
		for st := range macros.NumStages {
			if macros.CanDerive(st, n) {
				at[st] |= 1 << i
			}
		}
	}
	return w, at
}()

// derivIndex returns the index of a normalised macro name in
// macros.DerivableNames, or -1.
func derivIndex(n string) int {
	for i, d := range macros.DerivableNames {
		if d == n {
			return i
		}
	}
	return -1
}

// macroStage maps an event kind to its macro stage.
func macroStage(k Kind) (macros.Stage, bool) {
	switch k {
	case KindConnect:
		return macros.Connect, true
	case KindHelo:
		return macros.Helo, true
	case KindMail:
		return macros.EnvFrom, true
	case KindRcpt:
		return macros.EnvRcpt, true
	case KindData:
		return macros.Data, true
	case KindEOH:
		return macros.EOH, true
	case KindEOM:
		return macros.EOM, true
	}
	return 0, false
}

// MacroStage returns the macro stage of events of kind k (false: none).
func MacroStage(k Kind) (macros.Stage, bool) { return macroStage(k) }

// synthState is what the session knows to derive macros from.
type synthState struct {
	tab                  *macroChain
	clientAddr, clientNm string
	clientPort           int
	clientPortS          string // clientPort in decimal
	resolve              string
	helo                 string
	mailAddr             string
	rcptAddr             string
	nrcpts               int
	qid                  string // the message's queue id, once the MTA gave one
	pendingRcpt          bool   // a RCPT was fanned out; count it if not objected to
}

func host(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at+1:]
	}
	return ""
}

// derived returns the value of a derivable macro (normalised name), at a
// stage where it can be derived.
func (s *Session) derived(name string) (string, bool) {
	m := &s.syn
	switch name {
	case "client_addr":
		return m.clientAddr, m.clientAddr != ""
	case "client_name":
		return m.clientNm, m.clientNm != ""
	case "client_port":
		return m.clientPortS, m.clientAddr != ""
	case "client_resolve":
		return m.resolve, m.resolve != ""
	case "listener":
		return s.offer.Listener, s.offer.Listener != ""
	case "multiplexer":
		return macros.Multiplexer, true
	case "mult_version":
		return s.e.Macros.Version, s.e.Macros.Version != ""
	case "s":
		return m.helo, m.helo != ""
	case "mail_addr":
		return m.mailAddr, true
	case "mail_host":
		return host(m.mailAddr), true
	case "i":
		return m.qid, m.qid != ""
	case "nrcpts":
		return strconv.Itoa(m.nrcpts), true
	case "rcpt_addr":
		return m.rcptAddr, true
	case "rcpt_host":
		return host(m.rcptAddr), true
	}
	return "", false
}

// rewriteMacros translates ev's macros for its stage and adds the
// derivable ones; called by Handle before anything else. ev.Macros is
// replaced, never modified in place (the front end's slices stay as
// they were).
func (s *Session) rewriteMacros(ev *Event) {
	if s.e.Macros == nil {
		return
	}
	m := &s.syn
	if m.tab == nil {
		m.tab = s.e.Macros.table(s.offer.Front, s.offer.Listener)
	}
	if m.pendingRcpt {
		// The previous RCPT was accepted (noteRcpt: the merge did not
		// object): it counts from the next event on.
		m.nrcpts++
		m.pendingRcpt = false
	}
	switch ev.Kind {
	case KindConnect:
		m.clientAddr, m.clientNm, m.clientPort = "", ev.Hostname, int(ev.Port)
		m.clientPortS = strconv.Itoa(m.clientPort)
		if ev.Family == '4' || ev.Family == '6' {
			if a, err := netip.ParseAddr(strings.TrimPrefix(ev.Address, "IPv6:")); err == nil {
				m.clientAddr = a.String()
			} else {
				m.clientAddr = ev.Address
			}
		}
		m.resolve = ""
		if m.clientNm != "" {
			m.resolve = "OK"
			if strings.HasPrefix(m.clientNm, "[") {
				m.resolve = "FAIL" // the MTA found no name
			}
		}
	case KindHelo:
		m.helo = ev.Arg
	case KindMail:
		m.mailAddr, m.nrcpts, m.qid, m.rcptAddr = "", 0, "", ""
		if len(ev.Args) > 0 {
			m.mailAddr = macros.StripBrackets(ev.Args[0])
		}
	case KindRcpt:
		m.rcptAddr = ""
		if len(ev.Args) > 0 {
			m.rcptAddr = macros.StripBrackets(ev.Args[0])
		}
	case KindAbort, KindQuitNC:
		m.mailAddr, m.rcptAddr, m.nrcpts, m.qid = "", "", 0, ""
	}
	for _, set := range ev.Macros {
		if v, ok := macros.Lookup(set.Pairs, macros.QueueID); ok && v != "" {
			m.qid = v
		}
	}
	st, ok := macroStage(ev.Kind)
	if !ok {
		return
	}
	if s.msets.Chunk == 0 {
		s.msets.Chunk, s.synth.Chunk = 16, 64
	}
	out := s.msets.Take(len(ev.Macros) + 1)
	found := false
	for _, set := range ev.Macros {
		if set.For == ev.Kind {
			found = true
			set = s.translate(st, set)
		}
		out = append(out, set)
	}
	if !found {
		out = append(out, s.translate(st, MacroSet{For: ev.Kind}))
	}
	ev.Macros = out
}

// translate applies the session's table to one stage's set and fills its
// Synth pairs: the table's offered values the MTA did not send, then the
// derivable macros neither sent nor offered.
func (s *Session) translate(st macros.Stage, set MacroSet) MacroSet {
	set.Pairs = s.syn.tab.tab.Apply(st, set.Pairs)
	set.Synth = nil
	var offered []string
	if st >= 0 && st < macros.NumStages {
		offered = s.syn.tab.offered[st]
	}
	var have uint32 // derivable names sent or offered
	for i := 0; i+1 < len(set.Pairs); i += 2 {
		if j := derivIndex(macros.Normalize(set.Pairs[i])); j >= 0 {
			have |= 1 << j
		}
	}
	n := 0
	for i := 0; i+1 < len(offered); i += 2 {
		if _, sent := macros.Lookup(set.Pairs, offered[i]); !sent {
			n += 2
		}
		if j := derivIndex(macros.Normalize(offered[i])); j >= 0 {
			have |= 1 << j // a table's value wins
		}
	}
	var vals [32]string
	var want uint32
	if st >= 0 && st < macros.NumStages {
		want = derivAt[st] &^ have
	}
	for j, name := range macros.DerivableNames {
		if want&(1<<j) == 0 {
			continue
		}
		if v, ok := s.derived(name); ok {
			vals[j] = v
			n += 2
		} else {
			want &^= 1 << j
		}
	}
	if n == 0 {
		return set
	}
	set.Synth = s.synth.Take(n)
	for i := 0; i+1 < len(offered); i += 2 {
		if _, sent := macros.Lookup(set.Pairs, offered[i]); !sent {
			set.Synth = append(set.Synth, offered[i], offered[i+1])
		}
	}
	for j := range macros.DerivableNames {
		if want&(1<<j) != 0 {
			set.Synth = append(set.Synth, derivWire[j], vals[j])
		}
	}
	return set
}

// noteRcpt records the merged answer to a RCPT, for {nrcpts}.
func (s *Session) noteRcpt(ev *Event, r Reply) {
	if s.e.Macros == nil || ev.Kind != KindRcpt {
		return
	}
	s.syn.pendingRcpt = !r.Verdict.Objects() && !ev.RejectedRcpt
}

// synthEvents returns the envelope events the engine needs from the MTA
// to derive the macros the backends asked for, though no backend may want
// the events themselves (mailfromd asks for {client_addr} at MAIL and
// skips CONNECT).
func (s *Session) synthEvents() KindSet {
	if s.e.Macros == nil {
		return 0
	}
	var need KindSet
	for _, b := range s.bs {
		if b.dead {
			continue
		}
		for _, list := range b.caps.Macros {
			for _, n := range list {
				if st, ok := macros.Derivable[macros.Normalize(n)]; ok {
					switch st {
					case macros.Connect:
						need = need.With(KindConnect)
					case macros.Helo:
						need = need.With(KindHelo)
					case macros.EnvFrom:
						need = need.With(KindMail)
					case macros.EnvRcpt:
						need = need.With(KindRcpt)
					}
				}
			}
		}
	}
	return need
}
