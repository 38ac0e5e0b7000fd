package smtp

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailmux/mailmux/adapters/smtp/relay"
)

type hopSession struct{ ended chan<- struct{} }

func (hopSession) Reset()                                 {}
func (s hopSession) Logout() error                        { s.ended <- struct{}{}; return nil }
func (hopSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (hopSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (hopSession) Data(r io.Reader) error                 { _, err := io.Copy(io.Discard, r); return err }

// TestRelayHopFlushAndClose: the service's reload (FlushNextHop) and
// shutdown (CloseNextHop) end the next hop's cached connections.
func TestRelayHopFlushAndClose(t *testing.T) {
	ended := make(chan struct{}, 10)
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return hopSession{ended}, nil }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	r, err := relay.New(relay.Config{Address: "inet:" + ln.Addr().String(), HeloName: "front.test", Cache: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := RelayHop(r)
	send := func() {
		ctx := context.Background()
		tx, err := h.Begin(ctx, Origin{}, "a@example.org", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Rcpt(ctx, "b@example.com", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Data(ctx, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		if err := tx.Close(); err != nil {
			t.Fatal(err)
		}
		if r.Idle() != 1 {
			t.Fatalf("%d idle next-hop connections, want 1", r.Idle())
		}
	}
	wait := func(what string) {
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the next hop's session did not end", what)
		}
	}
	send()
	FlushNextHop(h)
	wait("flush")
	send()
	CloseNextHop(h)
	wait("close")
	if r.Idle() != 0 {
		t.Fatalf("%d idle after CloseNextHop", r.Idle())
	}
}
