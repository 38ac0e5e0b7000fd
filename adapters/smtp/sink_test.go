package smtp

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailmux/mailmux/adapters/smtp/relay"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// sink is a go-smtp next hop that keeps what it receives.
type sink struct {
	mu     sync.Mutex
	msgs   []sinkMsg
	refuse map[string]bool
	addr   string
}

type sinkMsg struct {
	from  string
	rcpts []string
	data  string
}

type sinkSession struct {
	s   *sink
	cur sinkMsg
}

func (s *sink) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) { return &sinkSession{s: s}, nil }

func (ss *sinkSession) Reset()        { ss.cur = sinkMsg{} }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, opts *gosmtp.MailOptions) error {
	ss.cur.from = from
	return nil
}
func (ss *sinkSession) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.s.refuse[to] {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	ss.cur.rcpts = append(ss.cur.rcpts, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.cur.data = string(b)
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.cur)
	ss.s.mu.Unlock()
	return nil
}

func startSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{refuse: map[string]bool{}}
	srv := gosmtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) received() []sinkMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkMsg(nil), s.msgs...)
}

// startRelayFront is startFront relaying to a go-smtp sink through
// package relay.
func startRelayFront(t *testing.T, tune func(*Server), backends ...pmult.Backend) (*front, *sink) {
	t.Helper()
	sk := startSink(t)
	r, err := relay.New(relay.Config{Address: "inet:" + sk.addr, HeloName: "pmult.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := startFront(t, func(s *Server) {
		s.NextHop = RelayHop(r)
		if tune != nil {
			tune(s)
		}
	}, backends...)
	return f, sk
}

func TestRelayThroughGoSMTPSink(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{Actions: pmult.ActModify})
	b.On[pmult.KindEOM] = pmulttest.Step{Edits: []pmult.Edit{
		{Kind: pmult.EditAddHeader, Name: "X-Spam", Value: " no"},
		{Kind: pmult.EditAddRcpt, Addr: "<bcc@example.com>"},
	}}
	f, sk := startRelayFront(t, nil, b)
	body := strings.Repeat("line of the body, long enough to need several chunks\r\n", 4000) + ".leading dot\r\n"
	msg := "From: a@example.org\r\nSubject: big\r\n\r\n" + body
	if err := f.send(t, "a@example.org", []string{"x@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	got := sk.received()
	if len(got) != 1 {
		t.Fatalf("sink got %d messages", len(got))
	}
	want := "From: a@example.org\r\nSubject: big\r\nX-Spam: no\r\nX-Mailmux-Filtered: mx.test\r\n\r\n" + body
	if got[0].data != want {
		t.Errorf("relayed message differs: %d bytes, want %d", len(got[0].data), len(want))
	}
	if got[0].from != "a@example.org" || strings.Join(got[0].rcpts, ",") != "x@example.com,bcc@example.com" {
		t.Errorf("envelope %q %q", got[0].from, got[0].rcpts)
	}
}

func TestRelayRefusalReachesTheClient(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	f, sk := startRelayFront(t, nil, b)
	sk.refuse["nobody@example.com"] = true
	r := dialRaw(t, f.addr)
	r.reply()
	r.cmd("EHLO c.example")
	r.cmd("MAIL FROM:<a@example.org>")
	if got := r.cmd("RCPT TO:<nobody@example.com>"); got != "550 5.1.1 no such user here" {
		t.Errorf("refused recipient: %q", got)
	}
	if got := r.cmd("RCPT TO:<x@example.com>"); !strings.HasPrefix(got, "250") {
		t.Errorf("good recipient: %q", got)
	}
}

func TestRelayDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	rl, err := relay.New(relay.Config{Address: "inet:" + addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := startFront(t, func(s *Server) { s.NextHop = RelayHop(rl) }, pmulttest.New("b", pmult.Caps{}))
	r := dialRaw(t, f.addr)
	r.reply()
	r.cmd("EHLO c.example")
	if got := r.cmd("MAIL FROM:<a@example.org>"); !strings.HasPrefix(got, "451 4.4.1") {
		t.Errorf("next hop down: %q", got)
	}

}

// A next hop that accepts the connection and never answers: the client
// gets 451 at MAIL, nothing is accepted, and the front goes on.
func TestRelaySilentNextHop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	rl, err := relay.New(relay.Config{Address: "inet:" + ln.Addr().String(), CommandTimeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := startFront(t, func(s *Server) { s.NextHop = RelayHop(rl) }, pmulttest.New("b", pmult.Caps{}))
	r := dialRaw(t, f.addr)
	r.reply()
	r.cmd("EHLO c.example")
	if got := r.cmd("MAIL FROM:<a@example.org>"); !strings.HasPrefix(got, "451 4.4.") {
		t.Errorf("silent next hop: %q", got)
	}
	logged(t, f, "next hop refused or failed at MAIL")
	if got := r.cmd("NOOP"); !strings.HasPrefix(got, "250") {
		t.Errorf("session after the failure: %q", got)
	}
}
