package smtp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// fakeHop is a NextHop recording what it is sent.
type fakeHop struct {
	mu      sync.Mutex
	txns    []*fakeTxn
	beginEr error
	rcptErr map[string]error
	dataErr error
	lmtpErr map[string]error // an LMTP next hop's refusal of a recipient at end of data
}

type fakeTxn struct {
	h       *fakeHop
	origin  Origin
	from    string
	rcpts   []string
	msg     string
	resets  int
	sent    bool // Data succeeded
	closed  bool
	aborted bool
}

func (h *fakeHop) Begin(ctx context.Context, o Origin, from string, opts *gosmtp.MailOptions) (Txn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.beginEr != nil {
		return nil, h.beginEr
	}
	t := &fakeTxn{h: h, origin: o, from: from}
	h.txns = append(h.txns, t)
	return t, nil
}

func (h *fakeHop) ClientReply(err error) *gosmtp.SMTPError {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 4, 1}, Message: "next hop down"}
}

func (h *fakeHop) delivered() []*fakeTxn {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*fakeTxn
	for _, t := range h.txns {
		if t.sent {
			out = append(out, t)
		}
	}
	return out
}

func (t *fakeTxn) Rcpt(ctx context.Context, to string, opts *gosmtp.RcptOptions) error {
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	if err := t.h.rcptErr[to]; err != nil {
		return err
	}
	t.rcpts = append(t.rcpts, to)
	return nil
}

func (t *fakeTxn) Reset(ctx context.Context, from string, opts *gosmtp.MailOptions) error {
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	t.from, t.rcpts = from, nil
	t.resets++
	return nil
}

func (t *fakeTxn) Data(ctx context.Context, msg io.Reader) ([]error, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return nil, err
	}
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	if t.h.dataErr != nil {
		return nil, t.h.dataErr
	}
	t.msg, t.sent = string(b), true
	var perRcpt []error
	if t.h.lmtpErr != nil {
		for _, r := range t.rcpts {
			perRcpt = append(perRcpt, t.h.lmtpErr[r])
		}
	}
	return perRcpt, nil
}

func (t *fakeTxn) Close() error { t.h.mu.Lock(); t.closed = true; t.h.mu.Unlock(); return nil }
func (t *fakeTxn) Abort() error { t.h.mu.Lock(); t.aborted = true; t.h.mu.Unlock(); return nil }

type front struct {
	srv  *Server
	addr string
	hop  *fakeHop
	log  *pmulttest.LogBuffer
}

// startFront serves a Server on loopback with the given backends.
func startFront(t *testing.T, tune func(*Server), backends ...pmult.Backend) *front {
	t.Helper()
	pmulttest.NoLeaks(t)
	f := &front{hop: &fakeHop{rcptErr: map[string]error{}}, log: &pmulttest.LogBuffer{}}
	var slots []pmult.Slot
	for _, b := range backends {
		slots = append(slots, pmult.Slot{Backend: b})
	}
	f.srv = &Server{Engine: &pmult.Engine{Slots: slots}, Log: pmulttest.NewLog(f.log), NextHop: f.hop,
		Hostname: "mx.test", Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	if tune != nil {
		tune(f.srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); f.srv.Serve(ln) }()
	t.Cleanup(func() {
		f.srv.Shutdown(context.Background())
		<-done
	})
	return f
}

// send sends one message with a go-smtp client.
func (f *front) send(t *testing.T, from string, to []string, msg string) error {
	t.Helper()
	c, err := gosmtp.Dial(f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c.SendMail(from, to, strings.NewReader(msg))
}

// raw is a line-level client.
type raw struct {
	t  *testing.T
	nc net.Conn
	b  []byte
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &raw{t: t, nc: nc}
}

func (r *raw) write(s string) {
	r.t.Helper()
	if _, err := r.nc.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// reply reads one (possibly multi-line) reply; "" at EOF.
func (r *raw) reply() string {
	r.t.Helper()
	var out []string
	for {
		line, err := r.line()
		if err != nil {
			return strings.Join(out, "\n")
		}
		out = append(out, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(out, "\n")
		}
	}
}

func (r *raw) line() (string, error) {
	for {
		if i := bytes.IndexByte(r.b, '\n'); i >= 0 {
			l := strings.TrimRight(string(r.b[:i]), "\r")
			r.b = r.b[i+1:]
			return l, nil
		}
		buf := make([]byte, 4096)
		n, err := r.nc.Read(buf)
		r.b = append(r.b, buf[:n]...)
		if err != nil {
			return "", err
		}
	}
}

// cmd writes a line and reads the reply.
func (r *raw) cmd(line string) string {
	r.t.Helper()
	r.write(line + "\r\n")
	return r.reply()
}

var gosmtpError550 = gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
