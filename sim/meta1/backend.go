// backend.go: smtps as a pmult.Backend, so that mtasim's SMTP-script front
// (stdio scripts with \D \U \L \S \E, --bsmtp, --mail-file, daemon and load
// modes: `mtasim --pmilter SPEC`) drives a pmilter server (pmult's MeTA1
// front end) over the MODELLED protocol. Every mtasim session is one SMTP
// session on the one smtps connection all sessions share (Client), and:
//
//	connect, helo, mail, rcpt, data   -> the pmilter stage of that name
//	header, eoh, body                 -> raw CRLF message text, sent in
//	                                     chunks of ChunkSize as it fills
//	eom                               -> the last chunk, then dot
//	abort                             -> abort;  Close -> close
//	unknown commands                  -> nothing (no such pmilter stage)
//
// Replies map back to verdicts (continue, accept, reject, tempfail,
// discard, 421 = shutdown) with their text; the dot reply's modifications
// to pmult edits: recipient add/delete, positional header modifications
// to name-and-occurrence header edits against the headers sent, a
// replacement message to header edits plus a body replacement. MeTA1
// macros the pmilter asked for are filled from the macros mtasim sends
// (same or Postfix names: {auth_type}, {cert_subject}, …; \D hostname=…
// and the like), hostname from j, taid from i, msgid from Message-Id.
//
// smtps's policy_milter timeout and flags are the Client's: abort ends the
// SMTP session with 421, accept_but_reconnect goes on unfiltered and the
// next session reconnects. With neither flag, a missing reply (timeout,
// lost connection) is an error of the backend, so that mtasim treats it as
// it treats a broken milter (F=T, F=R, or fatal).
//
// Tunables (BackendConfig) and defaults: ConnectTimeout 10s, ChunkSize
// pmilter.ChunkSize (64 KiB), and the Client's (Timeout 5m, MacroMax 8).

package meta1sim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// BackendConfig configures a Backend.
type BackendConfig struct {
	// Name names the backend in logs and reports.
	Name string
	// Client is the smtps side: address, policy_milter timeout and flags.
	Client Config
	// ConnectTimeout bounds dialling and negotiation (default 10s).
	ConnectTimeout time.Duration
	// ChunkSize is the largest message chunk sent (default and maximum
	// pmilter.ChunkSize).
	ChunkSize int
}

// Backend is smtps's policy_milter client as a pmult.Backend: all
// sessions share one Client (one connection, reopened as the Client
// does). It is safe for concurrent use.
type Backend struct {
	cfg BackendConfig
	mu  sync.Mutex
	c   *Client
}

// NewBackend returns a Backend; it connects on the first Open.
func NewBackend(cfg BackendConfig) *Backend {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.ChunkSize <= 0 || cfg.ChunkSize > pmilter.ChunkSize {
		cfg.ChunkSize = pmilter.ChunkSize
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Client.Network + ":" + cfg.Client.Address
	}
	return &Backend{cfg: cfg}
}

// Name implements pmult.Backend.
func (b *Backend) Name() string { return b.cfg.Name }

// Client returns the shared client, dialling it first if needed.
func (b *Backend) Client(ctx context.Context) (*Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		return b.c, nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout)
	defer cancel()
	c, err := Dial(ctx, b.cfg.Client)
	if err != nil {
		return nil, err
	}
	b.c = c
	return c, nil
}

// Close closes the shared connection.
func (b *Backend) Close() error {
	b.mu.Lock()
	c := b.c
	b.c = nil
	b.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

// Open implements pmult.Backend: a new SMTP session on the shared
// connection (nothing is sent before the connect event).
func (b *Backend) Open(ctx context.Context, info pmult.OpenInfo) (pmult.BackendSession, error) {
	c, err := b.Client(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout)
	defer cancel()
	s, err := c.NewSession(ctx)
	if err != nil {
		return nil, err
	}
	return &backendSession{b: b, s: s, derived: map[string]string{}}, nil
}

// pmilterCaps: what the modelled pmilter can ask smtps to do.
var pmilterCaps = pmult.Caps{Actions: pmult.ActAddHeaders | pmult.ActChangeHeaders | pmult.ActAddRcpt |
	pmult.ActAddRcptPar | pmult.ActDelRcpt | pmult.ActChangeBody}

// postfixAliases maps Postfix/Sendmail macro names to MeTA1's.
var postfixAliases = map[string]string{
	"cipher": "tls_cipher_suite", "cipher_bits": "tls_cipher_bits",
	"cert_subject": "tls_cert_subject", "cert_issuer": "tls_cert_issuer",
	"verify": "tls_vrfy",
}

type backendSession struct {
	b *Backend
	s *Session

	derived map[string]string // MeTA1 macros derived from earlier stages
	nrcpt   int               // RCPT commands in the transaction (rejected ones too)
	inTx    bool              // MAIL sent and the transaction not ended at the pmilter
	buf     []byte            // message text not sent yet
	hdrs    []Header          // the headers sent, values with "\n" between folded lines
	msgid   string
}

func (bs *backendSession) Caps() pmult.Caps { return pmilterCaps }

// Close ends the SMTP session at the pmilter.
func (bs *backendSession) Close() error { return bs.s.Close() }

// Handle implements pmult.BackendSession: every pmilter request is
// answered before the next (the session does not pipeline; the engine runs
// it beside the other backends).
func (bs *backendSession) Handle(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	s := bs.s
	switch ev.Kind {
	case pmult.KindConnect:
		bs.setMacros(ev)
		var addr netip.Addr
		if ev.Family == '4' || ev.Family == '6' {
			addr, _ = netip.ParseAddr(ev.Address)
		}
		return bs.reply(s.Connect(ctx, addr, int(ev.Port), ev.Hostname))
	case pmult.KindHelo:
		bs.setMacros(ev)
		return bs.reply(s.Ehlo(ctx, ev.Arg))
	case pmult.KindMail:
		if bs.inTx { // the previous transaction ended without dot or abort
			if err := s.Abort(); err != nil {
				return pmult.Reply{}, err
			}
		}
		bs.inTx, bs.nrcpt = true, 0
		bs.resetMessage()
		bs.setMacros(ev)
		addr, args := "", []string(nil)
		if len(ev.Args) > 0 {
			addr, args = ev.Args[0], ev.Args[1:]
		}
		return bs.reply(s.Mail(ctx, addr, args...))
	case pmult.KindRcpt:
		bs.setMacros(ev)
		addr, args := "", []string(nil)
		if len(ev.Args) > 0 {
			addr, args = ev.Args[0], ev.Args[1:]
		}
		idx := bs.nrcpt
		bs.nrcpt++
		return bs.reply(s.Rcpt(ctx, idx, addr, args...))
	case pmult.KindData:
		bs.resetMessage()
		bs.setMacros(ev)
		return bs.reply(s.Data(ctx))
	case pmult.KindHeader:
		bs.hdrs = append(bs.hdrs, Header{ev.Name, ev.Value})
		if strings.EqualFold(ev.Name, "Message-Id") {
			bs.msgid = strings.TrimSpace(ev.Value)
		}
		bs.buf = append(bs.buf, ev.Name...)
		bs.buf = append(bs.buf, ':')
		bs.buf = append(bs.buf, strings.ReplaceAll(ev.Value, "\n", "\r\n")...)
		bs.buf = append(bs.buf, '\r', '\n')
		return bs.flush(ctx, false)
	case pmult.KindEOH:
		bs.buf = append(bs.buf, '\r', '\n')
		return bs.flush(ctx, false)
	case pmult.KindBody:
		bs.buf = append(bs.buf, ev.Chunk...)
		return bs.flush(ctx, false)
	case pmult.KindEOM:
		if rep, err := bs.flush(ctx, true); err != nil || rep.Verdict != pmult.Continue {
			return rep, err // an objecting chunk reply is the message's (no dot)
		}
		if bs.msgid != "" {
			bs.derived["msgid"] = bs.msgid
		}
		bs.setMacros(ev)
		r, err := s.Dot(ctx)
		rep, err := bs.reply(r, err)
		if err != nil {
			return rep, err
		}
		bs.inTx = false
		if !rep.Verdict.Objects() {
			if rep.Edits, err = bs.edits(r); err != nil {
				return pmult.Reply{}, err
			}
		}
		return rep, nil
	case pmult.KindAbort:
		bs.inTx = false
		bs.resetMessage()
		return pmult.Reply{}, s.Abort()
	}
	// Unknown commands, quit events: the model has no stage for them.
	return pmult.Reply{}, nil
}

func (bs *backendSession) resetMessage() {
	bs.buf, bs.hdrs, bs.msgid = bs.buf[:0], bs.hdrs[:0], ""
	delete(bs.derived, "msgid")
}

// flush sends full chunks of the message text (all of it when final).
func (bs *backendSession) flush(ctx context.Context, final bool) (pmult.Reply, error) {
	n := bs.b.cfg.ChunkSize
	off := 0
	defer func() { bs.buf = bs.buf[:copy(bs.buf, bs.buf[off:])] }()
	for len(bs.buf)-off >= n || final && len(bs.buf) > off {
		end := min(off+n, len(bs.buf))
		r, err := bs.s.Msg(ctx, bs.buf[off:end])
		off = end
		rep, err := bs.reply(r, err)
		if err != nil || rep.Verdict != pmult.Continue {
			return rep, err
		}
	}
	return pmult.Reply{}, nil
}

// setMacros fills the MeTA1 macros for the next request from the macros
// mtasim sends with ev and what earlier stages told.
func (bs *backendSession) setMacros(ev *pmult.Event) {
	vals := make(map[string]string, len(bs.derived)+4)
	for k, v := range bs.derived {
		vals[k] = v
	}
	for _, ms := range ev.Macros {
		for i := 0; i+1 < len(ms.Pairs); i += 2 {
			n, v := macros.Normalize(ms.Pairs[i]), ms.Pairs[i+1]
			switch {
			case n == "j":
				bs.derived["hostname"], vals["hostname"] = v, v
			case n == "i" && ev.Kind != pmult.KindConnect && ev.Kind != pmult.KindHelo:
				bs.derived["taid"], vals["taid"] = v, v
			}
			if a, ok := postfixAliases[n]; ok {
				n = a
			}
			if c, ok := macros.CanonicalMeta1(n); ok {
				vals[c] = v
			}
		}
	}
	bs.s.Macros = vals
}

// reply maps a pmilter reply to a verdict.
func (bs *backendSession) reply(r Reply, err error) (pmult.Reply, error) {
	if err != nil {
		return pmult.Reply{}, err
	}
	if r.TimedOut && bs.b.cfg.Client.Flags&(FlagAbort|FlagAcceptButReconnect) == 0 {
		cause := r.Err
		if cause == nil {
			cause = errors.New("no reply")
		}
		return pmult.Reply{}, fmt.Errorf("policy milter: %w", cause)
	}
	rep := pmult.Reply{From: bs.b.cfg.Name}
	switch r.Code {
	case pmilter.ReplyContinue:
	case pmilter.ReplyAccept:
		rep.Verdict = pmult.Accept
	case pmilter.ReplyReject:
		rep.Verdict, rep.Text = pmult.Reject, r.Text
	case pmilter.ReplyTempfail:
		rep.Verdict, rep.Text = pmult.Tempfail, r.Text
	case pmilter.ReplyDiscard:
		rep.Verdict = pmult.Discard
	case pmilter.ReplySSD:
		rep.Verdict, rep.Text = pmult.Shutdown, r.Text
	default:
		return pmult.Reply{}, fmt.Errorf("policy milter: unknown reply code %d", r.Code)
	}
	return rep, nil
}

// edits turns the modifications of a dot reply into pmult edits against
// the message as sent.
func (bs *backendSession) edits(r Reply) ([]pmult.Edit, error) {
	var es []pmult.Edit
	for _, d := range r.RcptDel {
		es = append(es, pmult.Edit{Kind: pmult.EditDelRcpt, Addr: d.Addr})
	}
	for _, a := range r.RcptAdd {
		if a.Args != "" {
			es = append(es, pmult.Edit{Kind: pmult.EditAddRcptPar, Addr: a.Addr, Args: a.Args, HasArgs: true})
		} else {
			es = append(es, pmult.Edit{Kind: pmult.EditAddRcpt, Addr: a.Addr})
		}
	}
	hs := append([]Header(nil), bs.hdrs...)
	if r.Replacement != nil {
		// The whole message: drop the headers sent, add the new ones
		// (mtasim's report diffs the lists), replace the body.
		for _, h := range hs {
			es = append(es, pmult.Edit{Kind: pmult.EditChangeHeader, Name: h.Name, Index: 1})
		}
		nh, body := SplitMessage(r.Replacement)
		for _, h := range nh {
			es = append(es, pmult.Edit{Kind: pmult.EditAddHeader, Name: h.Name, Value: engineValue(h.Value)})
		}
		return append(es, pmult.Edit{Kind: pmult.EditReplaceBody, Body: append([]byte{}, body...)}), nil
	}
	for _, m := range r.HdrMods {
		p, v := int(m.Pos), engineValue(m.Value)
		switch m.Type {
		case pmilter.HdrAppend:
			es = append(es, pmult.Edit{Kind: pmult.EditAddHeader, Name: m.Name, Value: v})
			hs = append(hs, Header{m.Name, v})
		case pmilter.HdrInsert:
			if p > len(hs) {
				return nil, fmt.Errorf("policy milter: header insert at %d of %d headers", p, len(hs))
			}
			es = append(es, pmult.Edit{Kind: pmult.EditInsertHeader, Index: p, Name: m.Name, Value: v})
			hs = append(hs[:p], append([]Header{{m.Name, v}}, hs[p:]...)...)
		case pmilter.HdrReplace, pmilter.HdrRemove:
			if p >= len(hs) {
				return nil, fmt.Errorf("policy milter: header change at %d of %d headers", p, len(hs))
			}
			occ := 0
			for _, h := range hs[:p+1] {
				if strings.EqualFold(h.Name, hs[p].Name) {
					occ++
				}
			}
			e := pmult.Edit{Kind: pmult.EditChangeHeader, Index: occ, Name: hs[p].Name}
			if m.Type == pmilter.HdrReplace {
				e.Value = v
				hs[p].Value = v
			} else {
				hs = append(hs[:p], hs[p+1:]...)
			}
			es = append(es, e)
		default:
			return nil, fmt.Errorf("policy milter: unknown header modification type %d", m.Type)
		}
	}
	return es, nil
}

// engineValue turns a header value of message text (CRLF between folded
// lines) into the engine's form ("\n").
func engineValue(v string) string { return strings.ReplaceAll(v, "\r\n", "\n") }
