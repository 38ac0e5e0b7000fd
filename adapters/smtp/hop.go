// hop.go: what the front needs of the next hop (package relay provides
// it; tests use a fake), and how its errors become client replies.

package smtp

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailmux/mailmux/adapters/smtp/relay"
)

// Origin is the client as the front saw it (after XCLIENT, XFORWARD or
// the PROXY protocol), for the next hop's XFORWARD/XCLIENT: package
// relay's, so the front hands it on as it is.
type Origin = relay.Origin

// NextHop starts next-hop transactions.
type NextHop interface {
	// Begin connects and sends MAIL.
	Begin(ctx context.Context, o Origin, from string, opts *gosmtp.MailOptions) (Txn, error)
	// ClientReply maps an error of Begin or of a Txn to the client's
	// reply.
	ClientReply(err error) *gosmtp.SMTPError
}

// Txn is one next-hop transaction (see package relay).
type Txn interface {
	Rcpt(ctx context.Context, to string, opts *gosmtp.RcptOptions) error
	Reset(ctx context.Context, from string, opts *gosmtp.MailOptions) error
	Data(ctx context.Context, msg io.Reader) (perRcpt []error, err error)
	Close() error
	Abort() error
}

// replyOf is the client reply for a next-hop error: the hop's own
// 4xx/5xx, else 451 4.4.1.
func (c *conn) hopReply(err error) string {
	var se *gosmtp.SMTPError
	if r := c.srv.NextHop.ClientReply(err); r != nil {
		se = r
	} else if !errors.As(err, &se) {
		se = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 4, 1}, Message: "Next hop not available"}
	}
	return formatSMTPError(se)
}

// formatSMTPError renders an SMTPError as reply lines (CRLF between
// lines, none at the end).
func formatSMTPError(se *gosmtp.SMTPError) string {
	code := se.Code
	if code < 400 || code > 599 {
		code = 451
	}
	ec := ""
	if se.EnhancedCode != (gosmtp.EnhancedCode{}) && se.EnhancedCode != gosmtp.NoEnhancedCode {
		ec = itoa(se.EnhancedCode[0]) + "." + itoa(se.EnhancedCode[1]) + "." + itoa(se.EnhancedCode[2]) + " "
	}
	msg := se.Message
	if msg == "" {
		msg = "Next hop error"
	}
	lines := splitLines(msg)
	out := ""
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		if i > 0 {
			out += "\r\n"
		}
		out += itoa(code) + sep + ec + l
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}
