// reply.go: SMTP replies as the simulator prints them, and the default
// texts (those of mailfromd's mtasim and Sendmail, so that scripts written
// for mailfromd's mtasim see the same lines).

package mtasim

import (
	"fmt"
	"strconv"
	"strings"
)

// Reply is one SMTP reply: a three-digit code and one or more text lines
// (without the code). An empty Lines prints as the bare code.
type Reply struct {
	Code  int
	Lines []string
}

// R builds a one-line reply.
func R(code int, text string) Reply { return Reply{Code: code, Lines: []string{text}} }

// String formats the reply as it goes on the wire, lines separated by
// "\r\n", without the final line end.
func (r Reply) String() string {
	var b strings.Builder
	r.write(&b, "\r\n")
	return strings.TrimSuffix(b.String(), "\r\n")
}

// Text formats the reply with "\n" line ends (for terminals and files),
// final line end included.
func (r Reply) Text() string {
	var b strings.Builder
	r.write(&b, "\n")
	return b.String()
}

func (r Reply) write(b *strings.Builder, eol string) {
	if len(r.Lines) == 0 {
		fmt.Fprintf(b, "%03d%s", r.Code, eol)
		return
	}
	for i, l := range r.Lines {
		sep := "-"
		if i == len(r.Lines)-1 {
			sep = " "
		}
		fmt.Fprintf(b, "%03d%s%s%s", r.Code, sep, l, eol)
	}
}

// Matches reports whether the reply code starts with the digits of an
// expect command ("\E2" matches every 2xx reply).
func (r Reply) Matches(expect string) bool {
	return strings.HasPrefix(strconv.Itoa(r.Code), expect)
}

// ParseReplyText turns a milter's custom reply ("550 5.7.1 text", lines
// joined by "\r\n" with "550-" continuations) into a Reply. Text that does
// not start with a code gets def's code.
func ParseReplyText(text string, def int) Reply {
	text = strings.TrimRight(text, "\r\n")
	r := Reply{Code: def}
	for i, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if len(l) >= 3 && isDigits(l[:3]) && (len(l) == 3 || l[3] == ' ' || l[3] == '-') {
			if i == 0 {
				r.Code, _ = strconv.Atoi(l[:3])
			}
			l = l[min(4, len(l)):]
		}
		r.Lines = append(r.Lines, l)
	}
	return r
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Default replies. The texts are mailfromd mtasim 8.15's where it has one.
var (
	replyHelo         = R(250, "pleased to meet you")
	replyEhlo         = Reply{Code: 250, Lines: []string{"pleased to meet you", "HELP"}}
	replySenderOK     = R(250, "Sender OK")
	replyRcptOK       = R(250, "Recipient OK")
	replyData         = R(354, `Enter mail, end with "." on a line by itself`)
	replyAccepted     = R(250, "Mail accepted for delivery")
	replyQuit         = R(221, "Done")
	replyReset        = R(250, "2.0.0 Reset state")
	replyNoop         = R(250, "2.0.0 OK")
	replyVrfy         = R(252, "2.5.2 Cannot VRFY user, but will accept message and attempt delivery")
	replyNeedHelo     = R(503, "Polite people say HELO first")
	replyNeedMail     = R(503, "Need MAIL command")
	replyNeedRcpt     = R(503, "Need RCPT command")
	replyNestedMail   = R(503, "5.5.0 Sender already specified")
	replyNoValidRcpts = R(554, "5.5.1 No valid recipients")
	replyUnknown      = R(500, "5.5.1 Command unrecognized")
	replyReject       = R(550, "5.7.1 Command rejected")
	replyTempfail     = R(451, "4.3.2 Please try again later")
	replyShutdown     = R(421, "4.7.0 closing connection")
	replyFilterFailed = R(451, "4.3.2 Milter failed, please try again later")
)
