package smtp

import (
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// An LMTP next hop that accepts some recipients and refuses others at end
// of data: the client gets the (first) refusal for the whole message, and
// a warning names the recipients that have the message already (they get
// it again when the client retries).
func TestLMTPPartialRefusal(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	f := startFront(t, nil, b)
	full := gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
	f.hop.lmtpErr = map[string]error{"full@example.com": &full}
	r := dialRaw(t, f.addr)
	r.reply()
	session(t, r, "EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<ok1@example.com>",
		"RCPT TO:<full@example.com>", "RCPT TO:<ok2@example.com>", "DATA")
	if got := r.cmd("Subject: s\r\n\r\nb\r\n."); got != "452 4.2.2 mailbox full" {
		t.Errorf("client reply %q, want the next hop's refusal", got)
	}
	log := f.log.String()
	var warn string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "LMTP next hop accepted some recipients and refused others") {
			warn = l
		}
	}
	if !strings.Contains(warn, "level=WARN") || !strings.Contains(warn, `accepted="<ok1@example.com> <ok2@example.com>"`) ||
		!strings.Contains(warn, "refused=1") {
		t.Errorf("want a warning naming the accepted recipients:\n%s", log)
	}

	// All refused: no warning (nothing delivered twice).
	f2 := startFront(t, nil, b)
	f2.hop.lmtpErr = map[string]error{"full@example.com": &full}
	r2 := dialRaw(t, f2.addr)
	r2.reply()
	session(t, r2, "EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<full@example.com>", "DATA")
	if got := r2.cmd("Subject: s\r\n\r\nb\r\n."); got != "452 4.2.2 mailbox full" {
		t.Errorf("client reply %q", got)
	}
	if strings.Contains(f2.log.String(), "LMTP next hop accepted some") {
		t.Errorf("warning without an accepted recipient:\n%s", f2.log.String())
	}
}
