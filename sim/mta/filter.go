// filter.go: the filter back of a Session: the events of each stage with
// their macros (Postfix's default lists, or the lists the filter asked
// for, plus every user-defined macro), the meaning of each verdict at each
// stage (as Sendmail applies it), ABORT where an MTA sends one, and the
// filter's failure.

package mtasim

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/mailmux/mailmux/internal/milterkind"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// connect sends the CONNECT event once, with the sender socket.
func (s *Session) connect(ctx context.Context) error {
	if s.connected {
		return nil
	}
	s.connected = true
	snd := s.sender
	ev := &pmult.Event{Kind: pmult.KindConnect, Hostname: snd.Host, Family: snd.Family, Port: snd.Port, Address: snd.Addr}
	if ev.Hostname == "" {
		ev.Hostname = "localhost"
	}
	rep, err := s.send(ctx, ev)
	if err != nil {
		_, err = s.failReply(err)
		return err
	}
	if r, stop := s.objection(rep, pmult.KindConnect); stop {
		s.sticky = &r
	}
	return nil
}

// send delivers one event to the filter with the stage's macros and
// returns its answer. Events the filter no longer wants (it accepted the
// connection or the message) are not sent.
func (s *Session) send(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	if s.filter == nil || s.connDone {
		return pmult.Reply{}, nil
	}
	switch ev.Kind {
	case pmult.KindRcpt, pmult.KindData, pmult.KindHeader, pmult.KindEOH, pmult.KindBody, pmult.KindEOM:
		if s.msgDone {
			return pmult.Reply{}, nil
		}
	}
	if st, ok := milterkind.Stage(ev.Kind); ok {
		ev.Macros = []pmult.MacroSet{{For: ev.Kind, Pairs: s.macroPairs(ev.Kind, macros.Stage(st))}}
	}
	switch ev.Kind {
	case pmult.KindMail, pmult.KindRcpt, pmult.KindData, pmult.KindHeader, pmult.KindEOH, pmult.KindBody:
		s.sentMsg = true
	}
	t0 := time.Now()
	rep, err := s.filter.Handle(ctx, ev)
	if s.cfg.OnStage != nil {
		s.cfg.OnStage(ev.Kind, time.Since(t0))
	}
	if err != nil {
		return rep, &FilterError{Name: s.filterName(), Err: err}
	}
	s.log.Debug("filter", "event", ev.Kind, "verdict", rep.Verdict, "text", rep.Text, "edits", len(rep.Edits))
	return rep, nil
}

// macroPairs builds the stage's macro packet: the filter's own list for
// the stage if it sent one, else the configured (Postfix default) list;
// then every user-defined macro not named in the list. Macros without a
// value are left out, as Postfix does.
func (s *Session) macroPairs(k pmult.Kind, st macros.Stage) []string {
	var list []string
	if l := s.caps.Macros[k]; len(l) > 0 {
		list = l
	} else if s.cfg.Macros[st] != nil {
		list = s.cfg.Macros[st]
	} else {
		list = macros.PostfixDefaults[st]
	}
	pairs := make([]string, 0, 2*(len(list)+len(s.defs)))
	seen := make(map[string]bool, len(list))
	for _, n := range list {
		nn := macros.Normalize(n)
		seen[nn] = true
		if v, ok := s.macroValue(nn); ok && v != "" {
			pairs = append(pairs, macros.Wire(nn), v)
		}
	}
	for _, d := range s.defs {
		if !seen[d.name] {
			pairs = append(pairs, macros.Wire(d.name), d.value)
		}
	}
	return pairs
}

// macroValue is a macro's value: user-defined, else what an MTA (Postfix,
// for the names it emulates) would say at this point of the session.
func (s *Session) macroValue(n string) (string, bool) {
	if v, ok := s.defined(n); ok {
		return v, true
	}
	snd := s.sender
	switch n {
	case "j":
		return s.hostname(), true
	case "daemon_name":
		return "mtasim", true
	case "daemon_addr":
		if s.cfg.DaemonAddr != "" {
			return s.cfg.DaemonAddr, true
		}
		return "127.0.0.1", true
	case "v":
		return "mailmux mtasim", true
	case "_":
		if snd.Addr != "" {
			return snd.Host + " [" + snd.Addr + "]", true
		}
		return snd.Host, true
	case "client_addr":
		return snd.Addr, snd.Addr != ""
	case "client_name", "client_ptr":
		return snd.Host, snd.Host != ""
	case "client_port":
		return strconv.Itoa(int(snd.Port)), snd.Port != 0
	case "client_connections":
		return "1", true
	case "s":
		return s.helo, s.helo != ""
	case "i":
		return s.queueID, s.queueID != ""
	case "r":
		return "SMTP", true
	}
	if s.msg == nil {
		return "", false
	}
	switch n {
	case "mail_addr", "f":
		return macros.StripBrackets(s.msg.From), true
	case "mail_host":
		return domain(s.msg.From), true
	case "mail_mailer":
		return "smtp", true
	case "rcpt_addr":
		return macros.StripBrackets(s.rcpt.Addr), true
	case "rcpt_host":
		return domain(s.rcpt.Addr), true
	case "rcpt_mailer":
		return "smtp", true
	case "nrcpts":
		return strconv.Itoa(len(s.msg.Rcpts)), true
	case "msg_id":
		for _, h := range s.msg.Headers {
			if strings.EqualFold(h.Name, "Message-Id") {
				return strings.TrimSpace(h.Value), true
			}
		}
	}
	return "", false
}

func domain(a string) string {
	b := macros.StripBrackets(a)
	if i := strings.LastIndexByte(b, '@'); i >= 0 {
		return b[i+1:]
	}
	return ""
}

// objection turns the filter's answer to an event into the SMTP reply when
// it stops the command (stop = true), and records what a non-stopping
// answer means: ACCEPT at CONNECT or HELO ends the filter's part in the
// connection, at a message stage in the message; DISCARD drops the message
// silently.
func (s *Session) objection(rep pmult.Reply, k pmult.Kind) (Reply, bool) {
	switch rep.Verdict {
	case pmult.Accept:
		if k == pmult.KindConnect || k == pmult.KindHelo {
			s.connDone = true
		} else if k != pmult.KindUnknown && s.msg != nil {
			s.msgDone, s.msgVerd, s.msgStage = true, pmult.Accept, k
			s.sentMsg = false
		}
	case pmult.Discard:
		if s.msg != nil {
			s.msgDone, s.msgVerd, s.msgStage = true, pmult.Discard, k
			s.sentMsg = false
		} else {
			// DISCARD outside a transaction: treated as a rejection (Sendmail).
			return replyReject, true
		}
	case pmult.Reject:
		return ParseReplyText(rep.Text, 550).orDefault(replyReject), true
	case pmult.Tempfail:
		return ParseReplyText(rep.Text, 451).orDefault(replyTempfail), true
	case pmult.Shutdown:
		s.quit = true
		return ParseReplyText(rep.Text, 421).orDefault(replyShutdown), true
	}
	return Reply{}, false
}

func (r Reply) orDefault(d Reply) Reply {
	if len(r.Lines) == 1 && r.Lines[0] == "" {
		return d
	}
	return r
}

// abort ends the transaction; the filter gets ABORT if it saw any event of
// the message that it did not finish.
func (s *Session) abort(ctx context.Context) {
	if s.sentMsg && s.filter != nil && !s.connDone {
		if _, err := s.filter.Handle(ctx, &pmult.Event{Kind: pmult.KindAbort}); err != nil {
			s.log.Debug("abort", "err", err)
		}
	}
	s.msg, s.sentMsg, s.msgDone, s.data = nil, false, false, false
	s.dataBuf.Reset()
}

// failReply handles a broken filter: with F=T or F=R the filter is dropped
// and every later command gets 451 or 550 (Sendmail's behaviour); without,
// the error goes up as fatal.
func (s *Session) failReply(err error) (Reply, error) {
	s.log.Warn("milter failed", "err", err)
	if s.filter != nil {
		s.filter.Close()
		s.filter = nil
	}
	s.msg, s.data = nil, false
	switch s.cfg.OnFailure {
	case 'T':
		s.sticky = &replyFilterFailed
		return replyFilterFailed, nil
	case 'R':
		r := R(550, "5.7.1 Milter failed, command rejected")
		s.sticky = &r
		return r, nil
	}
	s.quit = true
	return replyFilterFailed, err
}
