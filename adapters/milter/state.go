// state.go: the MTA-side state machine. libmilter (engine.c, next_states)
// ignores a command that comes out of order, leaving the MTA waiting for
// a reply until its timeout; pmult instead closes the connection with one
// line naming the command and the state. The table follows libmilter's,
// widened where Postfix and Sendmail really differ from it:
//
//   - HELO, MAIL and UNKNOWN come in any state, as libmilter accepts them
//     (its fallback to ST_HELO); in the content phase they first abort the
//     message, as libmilter does. Postfix sends HELO, then ABORT, when a
//     client says HELO again mid-transaction; HELO and UNKNOWN leave the
//     envelope as it is (a RCPT may follow).
//   - ABORT and QUIT come anywhere (Postfix repeats ABORT)
//   - DATA is optional (versions before 4 never send it)
//   - QUIT_NC comes outside the content phase and a CONNECT follows it
//   - a stage the MTA was told not to send (SMFIP_NO*) may be skipped
//
// Macro packets (SMFIC_MACRO) carry no state of their own.

package milter

import (
	"fmt"

	mp "github.com/mailmux/mailmux/milterproto"
)

// mtaState is where the MTA is in its milter session. The states up to
// stBody are ordered as the commands that lead to them.
type mtaState uint8

const (
	stOpts   mtaState = iota // negotiated, before CONNECT
	stIdle                   // after CONNECT or HELO, between messages
	stMail                   // after MAIL
	stRcpt                   // after RCPT
	stData                   // after DATA
	stHdrs                   // among the headers
	stEOH                    // after the end of headers
	stBody                   // among the body chunks
	stQuitNC                 // after QUIT_NC: a new CONNECT follows
)

var stateNames = [...]string{
	stOpts: "before CONNECT", stIdle: "outside a message", stMail: "after MAIL", stRcpt: "after RCPT",
	stData: "after DATA", stHdrs: "in the headers", stEOH: "after the end of headers",
	stBody: "in the body", stQuitNC: "after QUIT_NC",
}

func (s mtaState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state %d", s)
}

func bit(s mtaState) uint16 { return 1 << s }

const (
	content  = 1<<stData | 1<<stHdrs | 1<<stEOH | 1<<stBody
	anyState = 1<<(stQuitNC+1) - 1
)

// transition is the states a command may come in and the state it leads
// to (keep: the state does not change); ok is false for a code that is
// not an SMTP command.
type transition struct {
	from uint16
	to   mtaState
	keep bool
	ok   bool
}

// transitions, by command code: an array, looked up for every packet.
var transitions = func() (t [256]transition) {
	for cmd, tr := range map[byte]transition{
		mp.CmdConnect: {bit(stOpts) | bit(stQuitNC), stIdle, false, true},
		mp.CmdHelo:    {anyState, 0, true, true},
		mp.CmdMail:    {anyState, stMail, false, true},
		mp.CmdRcpt:    {bit(stMail) | bit(stRcpt), stRcpt, false, true},
		mp.CmdData:    {bit(stRcpt), stData, false, true},
		mp.CmdHeader:  {bit(stRcpt) | bit(stData) | bit(stHdrs), stHdrs, false, true},
		mp.CmdEOH:     {bit(stRcpt) | bit(stData) | bit(stHdrs), stEOH, false, true},
		mp.CmdBody:    {bit(stRcpt) | content, stBody, false, true},
		mp.CmdEOB:     {bit(stRcpt) | content, stIdle, false, true},
		mp.CmdUnknown: {anyState, 0, true, true},
		mp.CmdQuitNC:  {bit(stOpts) | bit(stIdle) | bit(stMail) | bit(stRcpt), stQuitNC, false, true},
	} {
		t[cmd] = tr
	}
	return t
}()

// skipped reports whether the MTA never sends the command that leads to
// state s, so that a command may follow the state before it directly.
func (c *conn) skipped(s mtaState) bool {
	switch s {
	case stIdle:
		return c.proto&mp.ProtoNoConnect != 0
	case stMail:
		return c.proto&mp.ProtoNoMail != 0
	case stRcpt:
		return c.proto&mp.ProtoNoRcpt != 0
	case stData:
		return c.proto&mp.ProtoNoData != 0 || c.version < 4
	case stHdrs:
		return c.proto&mp.ProtoNoHeaders != 0
	case stEOH:
		return c.proto&mp.ProtoNoEOH != 0
	}
	return false
}

// advance checks that command cmd may come now and moves to the state it
// leads to; out of order, it returns an error naming both. abort says that
// the command ends the message under way first (HELO, MAIL or UNKNOWN in
// the content phase).
func (c *conn) advance(cmd byte) (abort bool, err error) {
	switch cmd {
	case mp.CmdQuit, mp.CmdMacro, mp.CmdOptNeg:
		return false, nil
	case mp.CmdAbort:
		if c.state != stOpts && c.state != stQuitNC {
			c.state = stIdle
		}
		return false, nil
	}
	t := transitions[cmd]
	if !t.ok {
		return false, nil // unknown codes are refused by the caller
	}
	if t.keep && content&bit(c.state) != 0 {
		c.state = stIdle
		return true, nil
	}
	s := c.state
	// As libmilter's trans_ok: a state whose next command the MTA skips
	// lets the commands after that one in.
	for t.from&bit(s) == 0 {
		if s >= stBody || !c.skipped(s+1) {
			return false, fmt.Errorf("protocol violation: %s %s", mp.CmdName(cmd), c.state)
		}
		s++
	}
	abort = cmd == mp.CmdMail && content&bit(c.state) != 0
	if !t.keep {
		c.state = t.to
	} else if s != c.state {
		c.state = s
	}
	return abort, nil
}
