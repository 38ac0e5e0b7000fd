// smtp.go: a scriptable SMTP target for probes. What it answers depends on
// the server's options (greeting, drip speed, STARTTLS, catch-all) and on
// words in what the client sends:
//
//	RCPT local part  good, random, mailmux-*: 250   bad: 550   grey: 450
//	                 perm: 553   multi: multi-line 550   weird: 354
//	                 slow: no reply   drop: connection closed
//	                 other: 250 when CatchAll, else 550
//	MAIL FROM        rej: 550   tmp: 451   dropm: closed   (530 first when RequireTLS;
//	                 <> 550 when RejectNullSender)
//	EHLO argument    noehlo: 502 (HELO works)   rejhelo: 550 to both   tmphelo: 421
//
// Defaults: greeting "220 fake-smtp.test ESMTP callouttest", replies sent
// at once (Drip 0), no STARTTLS.

package callouttest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SMTPOptions configure a target.
type SMTPOptions struct {
	// Greeting is the banner, lines separated by "\n"; default
	// "220 fake-smtp.test ESMTP callouttest". "-" means never greet;
	// "x" means close the connection at once.
	Greeting string
	// Drip sends replies one byte per Drip (0: at once).
	Drip time.Duration
	// Delay waits this long before every reply.
	Delay time.Duration
	// StartTLS offers STARTTLS (self-signed certificate).
	StartTLS bool
	// RequireTLS answers MAIL FROM with 530 until TLS is on (implies StartTLS).
	RequireTLS bool
	// CatchAll accepts every local part without a keyword.
	CatchAll bool
	// RejectNullSender answers MAIL FROM:<> with 550.
	RejectNullSender bool
}

// SMTPServer is a running target.
type SMTPServer struct {
	Addr string // "ip:port"
	opts SMTPOptions
	ln   net.Listener
	tls  *tls.Config

	mu     sync.Mutex
	conns  map[net.Conn]bool
	log    []string
	wg     sync.WaitGroup
	count  atomic.Int64
	rcpts  atomic.Int64
	active atomic.Int64
	peak   atomic.Int64
}

// Peak returns the most connections open at once so far.
func (s *SMTPServer) Peak() int { return int(s.peak.Load()) }

// StartSMTP starts a target listening on addr ("127.0.0.2:25",
// "127.0.0.1:0") and stops it in t.Cleanup.
func StartSMTP(t testing.TB, addr string, opts SMTPOptions) *SMTPServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("callouttest: listen %s: %v", addr, err)
	}
	s := &SMTPServer{Addr: ln.Addr().String(), opts: opts, ln: ln, conns: map[net.Conn]bool{}}
	if opts.StartTLS || opts.RequireTLS {
		s.tls = selfSigned(t)
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and waits for its goroutines.
func (s *SMTPServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Connections returns how many connections were accepted.
func (s *SMTPServer) Connections() int { return int(s.count.Load()) }

// Rcpts returns how many RCPT commands were received.
func (s *SMTPServer) Rcpts() int { return int(s.rcpts.Load()) }

// Log returns every line received (">") and sent ("<") so far.
func (s *SMTPServer) Log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *SMTPServer) record(l string) {
	s.mu.Lock()
	if len(s.log) < 10000 {
		s.log = append(s.log, l)
	}
	s.mu.Unlock()
}

func (s *SMTPServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.count.Add(1)
		if n := s.active.Add(1); n > s.peak.Load() {
			s.peak.Store(n) // racy max; good enough for tests
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			var left atomic.Bool // the client sent QUIT: no longer counted
			s.handle(c, &left)
			if !left.Load() {
				s.active.Add(-1)
			}
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *SMTPServer) handle(c net.Conn, left *atomic.Bool) {
	s.record("+ " + c.RemoteAddr().String())
	var conn net.Conn = c
	r := bufio.NewReader(conn)
	send := func(lines ...string) bool {
		if s.opts.Delay > 0 {
			time.Sleep(s.opts.Delay)
		}
		for _, l := range lines {
			s.record("< " + l)
			b := []byte(l + "\r\n")
			if s.opts.Drip > 0 {
				for i := range b {
					if _, err := conn.Write(b[i : i+1]); err != nil {
						return false
					}
					time.Sleep(s.opts.Drip)
				}
				continue
			}
			if _, err := conn.Write(b); err != nil {
				return false
			}
		}
		return true
	}
	switch g := s.opts.Greeting; g {
	case "x":
		return
	case "-":
		r.ReadString('\n') // until the client gives up
		return
	case "":
		send("220 fake-smtp.test ESMTP callouttest")
	default:
		send(strings.Split(g, "\n")...)
		if g[0] != '2' {
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(strings.ToUpper(l), "QUIT") {
					send("221 bye")
					return
				}
				send("503 5.5.1 go away")
			}
		}
	}
	secure := false
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		l = strings.TrimRight(l, "\r\n")
		s.record("> " + l)
		u := strings.ToUpper(l)
		switch {
		case strings.HasPrefix(u, "EHLO"):
			switch {
			case strings.Contains(l, "noehlo"):
				send("502 5.5.2 EHLO not supported")
			case strings.Contains(l, "rejhelo"):
				send("550 5.7.1 go away")
			case strings.Contains(l, "tmphelo"):
				send("421 4.3.2 later")
			default:
				lines := []string{"250-fake-smtp.test", "250-PIPELINING"}
				if s.tls != nil && !secure {
					lines = append(lines, "250-STARTTLS")
				}
				send(append(lines, "250 8BITMIME")...)
			}
		case strings.HasPrefix(u, "HELO"):
			if strings.Contains(l, "rejhelo") {
				send("550 5.7.1 go away")
			} else {
				send("250 fake-smtp.test")
			}
		case u == "STARTTLS":
			if s.tls == nil || secure {
				send("454 4.7.0 TLS not available")
				continue
			}
			send("220 2.0.0 Ready to start TLS")
			tc := tls.Server(c, s.tls)
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				return
			}
			tc.SetDeadline(time.Time{})
			conn, r, secure = tc, bufio.NewReader(tc), true
		case strings.HasPrefix(u, "MAIL"):
			switch {
			case s.opts.RequireTLS && !secure:
				send("530 5.7.0 Must issue a STARTTLS command first")
			case strings.Contains(l, "rej"), s.opts.RejectNullSender && strings.Contains(l, "<>"):
				send("550 5.7.1 sender rejected")
			case strings.Contains(l, "tmp"):
				send("451 4.3.0 try later")
			case strings.Contains(l, "dropm"):
				return
			default:
				send("250 2.1.0 Ok")
			}
		case strings.HasPrefix(u, "RCPT"):
			s.rcpts.Add(1)
			local := l
			if i := strings.IndexByte(l, '<'); i >= 0 {
				local = l[i+1:]
			}
			local, _, _ = strings.Cut(local, "@")
			switch {
			case strings.HasPrefix(local, "good"), strings.HasPrefix(local, "random"), strings.HasPrefix(local, "mailmux-") && s.opts.CatchAll:
				send("250 2.1.5 Ok")
			case strings.HasPrefix(local, "bad"):
				send("550 5.1.1 <" + local + ">: Recipient address rejected: User unknown")
			case strings.HasPrefix(local, "grey"):
				send("450 4.7.1 <" + local + ">: Recipient address rejected: Greylisted, try again later")
			case strings.HasPrefix(local, "perm"):
				send("553 5.1.3 bad address syntax")
			case strings.HasPrefix(local, "multi"):
				send("550-5.1.1 first line", "550 5.1.1 second line")
			case strings.HasPrefix(local, "weird"):
				send("354 what")
			case strings.HasPrefix(local, "slow"):
				r.ReadString('\n') // no reply until the client closes
				return
			case strings.HasPrefix(local, "drop"):
				return
			case s.opts.CatchAll:
				send("250 2.1.5 Ok")
			default:
				send("550 5.1.1 User unknown")
			}
		case u == "RSET":
			send("250 2.0.0 Ok")
		case u == "QUIT":
			left.Store(true)
			s.active.Add(-1)
			send("221 2.0.0 Bye")
			return
		default:
			send("502 5.5.2 Error: command not recognized")
		}
	}
}

// selfSigned returns a server TLS config with a fresh ECDSA certificate.
func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("callouttest: key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fake-smtp.test"},
		DNSNames:     []string{"fake-smtp.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("callouttest: certificate: %v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
