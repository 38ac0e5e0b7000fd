// defer_test.go: the SMTP front lets the engine post the content ahead
// (a verdict about a header waits for end of message).

package smtp

import (
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// A batching backend gets every header, EOH and the body before any of
// its answers is read (the front does not wait per header), and its
// reject of a header is the answer to the final dot; nothing is relayed.
func TestContentPostedAheadVerdictAtEnd(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	b.Batch = true
	b.Hook = func(ev *pmult.Event) (pmulttest.Step, bool) {
		if ev.Kind == pmult.KindHeader && ev.Name == "X-Bad" {
			return pmulttest.Step{Verdict: pmult.Reject, Text: "550 5.7.1 bad header"}, true
		}
		return pmulttest.Step{}, false
	}
	f := startFront(t, nil, b)
	r := dialRaw(t, f.addr)
	r.reply()
	r.cmd("EHLO client.test")
	r.cmd("MAIL FROM:<a@example.org>")
	r.cmd("RCPT TO:<b@example.com>")
	r.cmd("DATA")
	if got := r.cmd("Subject: x\r\nX-Bad: yes\r\nTo: b@example.com\r\n\r\nbody\r\n."); got != "550 5.7.1 bad header" {
		t.Fatalf("end of data: %q, want the header's reject", got)
	}
	if d := f.hop.delivered(); len(d) != 0 {
		t.Fatalf("relayed %+v", d)
	}
	// Posted ahead: the header after X-Bad reached the backend (it was
	// sent before X-Bad's answer was read), as with Postfix's NR_HDR.
	var names []string
	for _, ev := range b.Events() {
		if ev.Kind == pmult.KindHeader {
			names = append(names, ev.Name)
		}
	}
	if strings.Join(names, ",") != "Subject,X-Bad,To" {
		t.Errorf("headers the backend got: %v, want all three (posted ahead)", names)
	}
}
