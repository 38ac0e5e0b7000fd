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
}

// table returns the chain for one session.
func (m *MacroTables) table(front, listener string) *macros.Table {
	return macros.Chain(m.Dialect[front], m.Global, m.Listener[listener])
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
	tab                  *macros.Table
	clientAddr, clientNm string
	clientPort           int
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

// derive returns the value of a derivable macro (normalised name) at st.
func (s *Session) derive(name string, st macros.Stage) (string, bool) {
	m := &s.syn
	if !macros.CanDerive(st, name) {
		return "", false
	}
	switch name {
	case "client_addr":
		return m.clientAddr, m.clientAddr != ""
	case "client_name":
		return m.clientNm, m.clientNm != ""
	case "client_port":
		return strconv.Itoa(m.clientPort), m.clientAddr != ""
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
	out := make([]MacroSet, 0, len(ev.Macros)+1)
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
// Synth pairs.
func (s *Session) translate(st macros.Stage, set MacroSet) MacroSet {
	set.Pairs = s.syn.tab.Apply(st, set.Pairs)
	set.Synth = nil
	offered := s.syn.tab.Offered(st)
	for i := 0; i+1 < len(offered); i += 2 {
		if _, sent := macros.Lookup(set.Pairs, offered[i]); !sent {
			set.Synth = append(set.Synth, offered[i], offered[i+1])
		}
	}
	for _, name := range macros.DerivableNames {
		if _, sent := macros.Lookup(set.Pairs, name); sent {
			continue
		}
		if _, dup := macros.Lookup(set.Synth, name); dup {
			continue // a table's value wins
		}
		if v, ok := s.derive(name, st); ok {
			set.Synth = append(set.Synth, macros.Wire(name), v)
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
