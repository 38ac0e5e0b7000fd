package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// sink is a go-smtp server recording what it was sent.
type sink struct {
	mu       sync.Mutex
	msgs     []sunk
	cur      sunk
	mailErr  error
	rcptErr  map[string]error
	dataErr  error
	lmtpErrs map[string]error
}

type sunk struct {
	from     string
	mailOpts smtp.MailOptions
	rcpts    []string
	rcptOpts []smtp.RcptOptions
	data     []byte
	resets   int
}

type sinkSession struct{ s *sink }

func (ss sinkSession) Reset() {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.cur.resets++
	ss.s.cur.from, ss.s.cur.rcpts, ss.s.cur.rcptOpts = "", nil, nil
}
func (ss sinkSession) Logout() error            { return nil }
func (ss sinkSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (ss sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, _, _ string) error { return nil }), nil
}
func (ss sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.s.mailErr != nil {
		return ss.s.mailErr
	}
	ss.s.cur.from = from
	if opts != nil {
		ss.s.cur.mailOpts = *opts
	}
	return nil
}
func (ss sinkSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if err := ss.s.rcptErr[to]; err != nil {
		return err
	}
	ss.s.cur.rcpts = append(ss.s.cur.rcpts, to)
	if opts != nil {
		ss.s.cur.rcptOpts = append(ss.s.cur.rcptOpts, *opts)
	}
	return nil
}
func (ss sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.s.dataErr != nil {
		return ss.s.dataErr
	}
	m := ss.s.cur
	m.data = b
	ss.s.msgs = append(ss.s.msgs, m)
	return nil
}
func (ss sinkSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	m := ss.s.cur
	m.data = b
	ss.s.msgs = append(ss.s.msgs, m)
	for _, rc := range m.rcpts {
		st.SetStatus(rc, ss.s.lmtpErrs[rc])
	}
	return nil
}

func (s *sink) got(t *testing.T) []sunk {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}

// startSink serves s on a loopback port and returns its relay address.
func startSink(t *testing.T, s *sink, lmtp bool) string {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return sinkSession{s}, nil }))
	srv.Domain = "sink.test"
	srv.LMTP = lmtp
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = 64 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "inet:" + ln.Addr().String()
}

func newRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	if cfg.HeloName == "" {
		cfg.HeloName = "front.test"
	}
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRelaySMTPOptionsAndDotStuffing(t *testing.T) {
	s := &sink{}
	r := newRelay(t, Config{Address: startSink(t, s, false)})
	ctx := context.Background()
	envid := "env+id=1"
	auth := "user@example.org"
	tx, err := r.Begin(ctx, Origin{}, "a@example.org", &smtp.MailOptions{
		Size: 1234, UTF8: true, Return: smtp.DSNReturnHeaders, EnvelopeID: envid, Auth: &auth,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt(ctx, "b@example.com", &smtp.RcptOptions{
		Notify:                []smtp.DSNNotify{smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed},
		OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "orig@example.com",
	}); err != nil {
		t.Fatal(err)
	}
	msg := "Subject: x\r\n\r\n.leading dot\r\nbare lf\nend\r\n"
	if per, err := tx.Data(ctx, strings.NewReader(msg)); err != nil || per != nil {
		t.Fatalf("Data: %v %v", per, err)
	}
	if err := tx.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := s.got(t)
	if len(got) != 1 {
		t.Fatalf("sink got %d messages", len(got))
	}
	m := got[0]
	if m.from != "a@example.org" || len(m.rcpts) != 1 || m.rcpts[0] != "b@example.com" {
		t.Errorf("envelope %q %q", m.from, m.rcpts)
	}
	o := m.mailOpts
	if o.Size != 1234 || !o.UTF8 || o.Return != smtp.DSNReturnHeaders || o.EnvelopeID != envid || o.Auth == nil || *o.Auth != auth {
		t.Errorf("MAIL options %+v", o)
	}
	ro := m.rcptOpts[0]
	if len(ro.Notify) != 2 || ro.OriginalRecipient != "orig@example.com" {
		t.Errorf("RCPT options %+v", ro)
	}
	want := "Subject: x\r\n\r\n.leading dot\r\nbare lf\r\nend\r\n"
	if string(m.data) != want {
		t.Errorf("data %q, want %q", m.data, want)
	}
}

func TestRelayRefusalsPassThrough(t *testing.T) {
	s := &sink{
		rcptErr: map[string]error{"no@example.com": &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}},
		dataErr: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content refused"},
	}
	r := newRelay(t, Config{Address: startSink(t, s, false)})
	ctx := context.Background()
	tx, err := r.Begin(ctx, Origin{}, "a@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Abort()
	err = tx.Rcpt(ctx, "no@example.com", nil)
	if rep := ClientReply(err); rep == nil || rep.Code != 550 || rep.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || rep.Message != "no such user" {
		t.Fatalf("refused RCPT: %v -> %+v", err, rep)
	}
	if err := tx.Rcpt(ctx, "yes@example.com", nil); err != nil {
		t.Fatalf("RCPT after a refused one: %v", err)
	}
	_, err = tx.Data(ctx, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if rep := ClientReply(err); rep == nil || rep.Code != 554 || rep.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("refused DATA: %v -> %+v", err, rep)
	}
	if len(s.got(t)) != 0 {
		t.Fatal("sink stored a refused message")
	}

	s.mu.Lock()
	s.mailErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
	s.mu.Unlock()
	tx2, err := r.Begin(ctx, Origin{}, "a@example.org", nil)
	if tx2 != nil {
		t.Fatal("Begin returned a transaction with MAIL refused")
	}
	if rep := ClientReply(err); rep == nil || rep.Code != 451 || rep.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) || rep.Message != "greylisted" {
		t.Fatalf("refused MAIL: %v -> %+v", err, rep)
	}
}

func TestRelayResetReplaysEnvelope(t *testing.T) {
	s := &sink{}
	r := newRelay(t, Config{Address: startSink(t, s, false)})
	ctx := context.Background()
	tx := beginRcpt(t, r, "old@example.org", "gone@example.com")
	if err := tx.Reset(ctx, "new@example.org", &smtp.MailOptions{Size: 10}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt(ctx, "added@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Data(ctx, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	got := s.got(t)
	if len(got) != 1 || got[0].from != "new@example.org" || len(got[0].rcpts) != 1 || got[0].rcpts[0] != "added@example.com" || got[0].resets == 0 {
		t.Fatalf("after Reset the sink got %+v", got)
	}
}

func TestRelayLMTPPerRecipient(t *testing.T) {
	s := &sink{lmtpErrs: map[string]error{
		"full@example.com": &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"},
	}}
	r := newRelay(t, Config{Address: startSink(t, s, true), LMTP: true})
	ctx := context.Background()
	tx, err := r.Begin(ctx, Origin{}, "a@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for _, rc := range []string{"one@example.com", "full@example.com", "two@example.com"} {
		if err := tx.Rcpt(ctx, rc, nil); err != nil {
			t.Fatal(err)
		}
	}
	per, err := tx.Data(ctx, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(per) != 3 || per[0] != nil || per[2] != nil || per[1] == nil {
		t.Fatalf("per recipient %v", per)
	}
	if rep := ClientReply(per[1]); rep.Code != 452 || rep.EnhancedCode != (smtp.EnhancedCode{4, 2, 2}) {
		t.Fatalf("refused recipient -> %+v", rep)
	}
	if rep := ClientReply(FoldLMTP(per)); rep == nil || rep.Code != 452 {
		t.Fatalf("folded -> %+v", rep)
	}
	if FoldLMTP([]error{nil, nil}) != nil {
		t.Fatal("all accepted folds to a refusal")
	}
}

// script is a hand-written next hop on a raw listener: greet is its
// greeting ("" for none), and answer is called with each line read and
// writes whatever it likes (nothing, a drip, a close).
type script struct {
	greet  string
	answer func(c net.Conn, line string, stop <-chan struct{}) bool // false: stop serving
}

// startScript serves sc once per connection and returns the address and a
// channel of every line received.
func startScript(t *testing.T, sc script) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	stopScripts := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if sc.greet != "" {
					io.WriteString(c, sc.greet+"\r\n")
				}
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					l = strings.TrimRight(l, "\r\n")
					select {
					case lines <- l:
					default: // a message's lines: not needed
					}
					if !sc.answer(c, l, stopScripts) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-accepted
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		close(stopScripts)
		wg.Wait()
	})
	return "inet:" + ln.Addr().String(), lines
}

// basic answers like a plain SMTP server offering ext; in DATA it reads up
// to the dot.
func basic(ext ...string) func(c net.Conn, line string, stop <-chan struct{}) bool {
	inData := false
	return func(c net.Conn, l string, _ <-chan struct{}) bool {
		if inData {
			if l == "." {
				inData = false
				io.WriteString(c, "250 2.0.0 queued\r\n")
			}
			return true
		}
		verb := strings.ToUpper(strings.Fields(l + " x")[0])
		switch verb {
		case "EHLO", "LHLO":
			var b strings.Builder
			b.WriteString("250-next.test\r\n")
			for _, e := range ext {
				b.WriteString("250-" + e + "\r\n")
			}
			b.WriteString("250 8BITMIME\r\n")
			io.WriteString(c, b.String())
		case "DATA":
			inData = true
			io.WriteString(c, "354 go ahead\r\n")
		case "QUIT":
			io.WriteString(c, "221 bye\r\n")
			return false
		case "XCLIENT":
			io.WriteString(c, "220 next.test again\r\n")
		default:
			io.WriteString(c, "250 2.0.0 ok\r\n")
		}
		return true
	}
}

func drain(ch <-chan string) []string {
	var out []string
	for {
		select {
		case l := <-ch:
			out = append(out, l)
		default:
			return out
		}
	}
}

func TestRelayXForward(t *testing.T) {
	addr, lines := startScript(t, script{greet: "220 next.test ESMTP", answer: basic("XFORWARD NAME ADDR PROTO HELO PORT IDENT")})
	r := newRelay(t, Config{Address: addr, XForward: true})
	ctx := context.Background()
	o := Origin{Addr: "2001:db8::1", Port: 4711, Name: "[UNAVAILABLE]", Helo: "client helo+x", Proto: "ESMTP", Ident: "ABC123"}
	tx, err := r.Begin(ctx, o, "a@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Reset(ctx, "b@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Close(); err != nil {
		t.Fatal(err)
	}
	got := drain(lines)
	want := "XFORWARD NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::1 PORT=4711 PROTO=ESMTP HELO=client+20helo+2Bx IDENT=ABC123"
	var seq []string
	for _, l := range got {
		if strings.HasPrefix(l, "XFORWARD") || strings.HasPrefix(l, "MAIL") || l == "RSET" {
			seq = append(seq, l)
		}
	}
	if len(seq) != 5 || seq[0] != want || !strings.HasPrefix(seq[1], "MAIL FROM:<a@example.org>") ||
		seq[2] != "RSET" || seq[3] != want || !strings.HasPrefix(seq[4], "MAIL FROM:<b@example.org>") {
		t.Fatalf("commands:\n%s", strings.Join(got, "\n"))
	}
}

func TestRelayXClient(t *testing.T) {
	addr, lines := startScript(t, script{greet: "220 next.test ESMTP", answer: basic("XCLIENT NAME ADDR PORT PROTO HELO LOGIN")})
	r := newRelay(t, Config{Address: addr, XForward: true})
	ctx := context.Background()
	o := Origin{Addr: "192.0.2.7", Port: 25, Name: "client.example", Helo: "client.example", Proto: "ESMTP", Login: "joe"}
	tx, err := r.Begin(ctx, o, "a@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	tx.Close()
	got := drain(lines)
	var seq []string
	for _, l := range got {
		if !strings.HasPrefix(l, "RSET") {
			seq = append(seq, l)
		}
	}
	if len(seq) < 4 || seq[0] != "EHLO front.test" ||
		seq[1] != "XCLIENT NAME=client.example ADDR=192.0.2.7 PORT=25 PROTO=ESMTP HELO=client.example LOGIN=joe" ||
		seq[2] != "EHLO client.example" || !strings.HasPrefix(seq[3], "MAIL FROM:<a@example.org>") {
		t.Fatalf("commands:\n%s", strings.Join(got, "\n"))
	}
}

func TestRelayXForwardSplitsLongLines(t *testing.T) {
	lines := attrLines("XFORWARD", []attr{{"NAME", strings.Repeat("n", 255)}, {"ADDR", "192.0.2.1"}, {"HELO", strings.Repeat("h", 255)}})
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		if len(l)+2 > xforwardLine || !strings.HasPrefix(l, "XFORWARD ") {
			t.Fatalf("line %q", l)
		}
	}
}

// failure runs Begin (and Rcpt and Data while they succeed) against a
// misbehaving next hop and returns the first error.
func failure(t *testing.T, ctx context.Context, cfg Config, size int64) error {
	t.Helper()
	if cfg.HeloName == "" {
		cfg.HeloName = "front.test"
	}
	r := newRelay(t, cfg)
	done := make(chan error, 1)
	go func() {
		tx, err := r.Begin(ctx, Origin{}, "a@example.org", nil)
		if err != nil {
			done <- err
			return
		}
		defer tx.Abort()
		if err := tx.Rcpt(ctx, "b@example.com", nil); err != nil {
			done <- err
			return
		}
		_, err = tx.Data(ctx, io.LimitReader(zeros{}, size))
		done <- err
	}()
	// Liveness guard only: a bounded wait must end; the figure is far
	// above every timeout configured here.
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("no error from a misbehaving next hop")
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("relay hangs on a misbehaving next hop")
	}
	return nil
}

// zeros is a message of header-free text lines.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		if i%80 == 79 {
			p[i] = '\n'
		} else {
			p[i] = 'x'
		}
	}
	return len(p), nil
}

func want451(t *testing.T, err error, enh smtp.EnhancedCode, stage string) {
	t.Helper()
	var re *Error
	if !errors.As(err, &re) || re.Stage != stage {
		t.Errorf("error %v: want stage %s", err, stage)
	}
	rep := ClientReply(err)
	if rep.Code != 451 || rep.EnhancedCode != enh || !strings.Contains(rep.Message, "127.0.0.1") {
		t.Errorf("%v -> %d %v %q, want 451 %v naming the next hop", err, rep.Code, rep.EnhancedCode, rep.Message, enh)
	}
}

func TestRelayMisbehavingNextHop(t *testing.T) {
	short := Config{CommandTimeout: 300 * time.Millisecond, DataTimeout: 300 * time.Millisecond}
	bg := context.Background()

	t.Run("down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cfg := short
		cfg.Address = "inet:" + addr
		want451(t, failure(t, bg, cfg, 1000), smtp.EnhancedCode{4, 4, 1}, StageConnect)
	})
	t.Run("refuses at connect", func(t *testing.T) {
		cfg := short
		cfg.Address, _ = startScript(t, script{greet: "554 5.3.2 not now", answer: basic()})
		err := failure(t, bg, cfg, 1000)
		want451(t, err, smtp.EnhancedCode{4, 4, 1}, StageGreeting)
	})
	t.Run("never greets", func(t *testing.T) {
		cfg := short
		cfg.Address, _ = startScript(t, script{answer: basic()})
		want451(t, failure(t, bg, cfg, 1000), smtp.EnhancedCode{4, 4, 1}, StageGreeting)
	})
	t.Run("421 at MAIL", func(t *testing.T) {
		cfg := short
		ans := basic()
		cfg.Address, _ = startScript(t, script{greet: "220 x", answer: func(c net.Conn, l string, stop <-chan struct{}) bool {
			if strings.HasPrefix(l, "MAIL") {
				io.WriteString(c, "421 4.3.0 shutting down\r\n")
				return false
			}
			return ans(c, l, stop)
		}})
		want451(t, failure(t, bg, cfg, 1000), smtp.EnhancedCode{4, 4, 2}, StageMail)
	})
	t.Run("drips RCPT answer", func(t *testing.T) {
		// One byte every 20 ms, forever: only a per-command bound ends it.
		cfg := short
		ans := basic()
		cfg.Address, _ = startScript(t, script{greet: "220 x", answer: func(c net.Conn, l string, stop <-chan struct{}) bool {
			if strings.HasPrefix(l, "RCPT") {
				io.WriteString(c, "250-")
				for {
					if _, err := c.Write([]byte("x")); err != nil {
						return false
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			return ans(c, l, stop)
		}})
		want451(t, failure(t, bg, cfg, 1000), smtp.EnhancedCode{4, 4, 2}, StageRcpt)
	})
	t.Run("never answers DATA end", func(t *testing.T) {
		cfg := short
		ans := basic()
		cfg.Address, _ = startScript(t, script{greet: "220 x", answer: func(c net.Conn, l string, stop <-chan struct{}) bool {
			if l == "." {
				return true // and never answer
			}
			return ans(c, l, stop)
		}})
		want451(t, failure(t, bg, cfg, 1000), smtp.EnhancedCode{4, 4, 2}, StageData)
	})
	t.Run("stops reading the message", func(t *testing.T) {
		cfg := short
		ans := basic()
		cfg.Address, _ = startScript(t, script{greet: "220 x", answer: func(c net.Conn, l string, stop <-chan struct{}) bool {
			if l == "DATA" {
				io.WriteString(c, "354 go\r\n")
				<-stop // until the test's cleanup
			}
			return ans(c, l, stop)
		}})
		want451(t, failure(t, bg, cfg, 32<<20), smtp.EnhancedCode{4, 4, 2}, StageData)
	})
	t.Run("drops the connection in DATA", func(t *testing.T) {
		cfg := short
		ans := basic()
		n := 0
		cfg.Address, _ = startScript(t, script{greet: "220 x", answer: func(c net.Conn, l string, stop <-chan struct{}) bool {
			if n > 0 {
				n++
				return n < 100
			}
			if l == "DATA" {
				n = 1
				io.WriteString(c, "354 go\r\n")
				return true
			}
			return ans(c, l, stop)
		}})
		want451(t, failure(t, bg, cfg, 1000), smtp.EnhancedCode{4, 4, 2}, StageData)
	})
	t.Run("context cancelled while RCPT waits", func(t *testing.T) {
		cfg := Config{} // default timeouts: only the context ends the wait
		ans := basic()
		atRcpt := make(chan struct{})
		cfg.Address, _ = startScript(t, script{greet: "220 x", answer: func(c net.Conn, l string, stop <-chan struct{}) bool {
			if strings.HasPrefix(l, "RCPT") {
				close(atRcpt)
				return true // no answer
			}
			return ans(c, l, stop)
		}})
		ctx, cancel := context.WithCancel(bg)
		go func() { <-atRcpt; cancel() }()
		err := failure(t, ctx, cfg, 1000)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not carry context.Canceled", err)
		}
		want451(t, err, smtp.EnhancedCode{4, 4, 2}, StageRcpt)
	})
}

// badReader fails after some bytes, as a spool read error would.
type badReader struct{ n int }

func (b *badReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errors.New("spool read failed")
	}
	n := min(len(p), b.n)
	for i := range p[:n] {
		p[i] = 'x'
		if i%80 == 79 {
			p[i] = '\n'
		}
	}
	b.n -= n
	return n, nil
}

// TestRelayMessageReadError: a message that cannot be read is not
// finished: the next hop never gets the final dot, stores nothing, and
// the client gets 451.
func TestRelayMessageReadError(t *testing.T) {
	s := &sink{}
	r := newRelay(t, Config{Address: startSink(t, s, false)})
	ctx := context.Background()
	tx := beginRcpt(t, r, "a@example.org", "b@example.com")
	_, err := tx.Data(ctx, &badReader{n: 100000})
	if rep := ClientReply(err); rep == nil || rep.Code != 451 || !strings.Contains(err.Error(), "spool read failed") {
		t.Fatalf("Data with a failing message: %v -> %+v", err, rep)
	}
	if err := tx.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if got := s.got(t); len(got) != 0 {
		t.Fatalf("the next hop stored a truncated message")
	}
}

func TestRelayConfig(t *testing.T) {
	if _, err := New(Config{Address: "nonsense:"}, nil); err == nil {
		t.Error("bad address accepted")
	}
	if _, err := New(Config{Address: "inet:127.0.0.1:25", CommandTimeout: -1, DataTimeout: -1}, nil); err == nil ||
		!strings.Contains(err.Error(), "command timeout") || !strings.Contains(err.Error(), "data timeout") {
		t.Errorf("negative timeouts: %v", err)
	}
	r, err := New(Config{Address: "unix:/tmp/x.sock"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.cfg.ConnectTimeout != DefaultConnectTimeout || r.cfg.CommandTimeout != DefaultCommandTimeout ||
		r.cfg.DataTimeout != DefaultDataTimeout || r.cfg.HeloName == "" {
		t.Errorf("defaults %+v", r.cfg)
	}
}

func TestClientReplyOther(t *testing.T) {
	if ClientReply(nil) != nil {
		t.Error("nil error gives a reply")
	}
	rep := ClientReply(fmt.Errorf("wrapped: %w", &Error{Hop: "inet:127.0.0.1:1", Stage: StageHello,
		Err: &smtp.SMTPError{Code: 550, Message: "go away"}}))
	if rep.Code != 451 || rep.EnhancedCode != (smtp.EnhancedCode{4, 4, 2}) {
		t.Errorf("refused EHLO -> %+v", rep)
	}
	rep = ClientReply(&Error{Hop: "h", Stage: StageRcpt, Err: &smtp.SMTPError{Code: 550, Message: "plain"}})
	if rep.Code != 550 || rep.EnhancedCode != (smtp.EnhancedCode{5, 0, 0}) {
		t.Errorf("550 without enhanced code -> %+v", rep)
	}
	if !bytes.Equal([]byte(xtext("a+b=c d\xff")), []byte("a+2Bb+3Dc+20d+FF")) {
		t.Errorf("xtext %q", xtext("a+b=c d\xff"))
	}
}
