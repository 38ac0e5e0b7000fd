package smtp

import (
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

const msg1 = "From: a@example.org\r\nSubject: hello\r\n folded\r\n\r\nbody line\r\n..dot line\r\n"

func TestEventsAndRelay(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	f := startFront(t, nil, b)
	if err := f.send(t, "a@example.org", []string{"x@example.com", "y@example.com"}, msg1); err != nil {
		t.Fatal(err)
	}
	got := b.KindsString()
	want := "connect helo mail rcpt rcpt data header header eoh body eom"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	ev := b.Events()
	if ev[0].Address != "127.0.0.1" || ev[0].Family != '4' || ev[1].Arg != "client.test" {
		t.Errorf("connect/helo: %+v %+v", ev[0], ev[1])
	}
	if ev[2].Args[0] != "<a@example.org>" || ev[3].Args[0] != "<x@example.com>" {
		t.Errorf("mail/rcpt args %q %q", ev[2].Args, ev[3].Args)
	}
	if ev[7].Name != "Subject" || ev[7].Value != " hello\n folded" {
		t.Errorf("header %q %q", ev[7].Name, ev[7].Value)
	}
	if string(ev[9].Chunk) != "body line\r\n..dot line\r\n" {
		t.Errorf("body %q", ev[9].Chunk)
	}
	d := f.hop.delivered()
	if len(d) != 1 {
		t.Fatalf("%d delivered", len(d))
	}
	wantMsg := "From: a@example.org\r\nSubject: hello\r\n folded\r\nX-Mailmux-Filtered: mx.test\r\n\r\nbody line\r\n..dot line\r\n"
	if d[0].msg != wantMsg || d[0].from != "a@example.org" || strings.Join(d[0].rcpts, ",") != "x@example.com,y@example.com" {
		t.Errorf("relayed %q from %q to %q", d[0].msg, d[0].from, d[0].rcpts)
	}
}
