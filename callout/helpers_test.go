// helpers_test.go: the test world of this package: a loopback block with
// a DNS server and SMTP targets, our server on a free port, and a script
// runner that records a session as a C:/S: transcript.

package callout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/callouttest"
	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// world is a loopback block with DNS and SMTP targets on one port.
type world struct {
	net     *callouttest.Net
	dns     *callouttest.DNSServer
	port    int
	targets map[int]*callouttest.SMTPServer
}

// newWorld starts the targets of the interop scenarios on port (25 for the
// real calloutd) and a DNS server on IP(53):dnsPort serving their zones.
func newWorld(t *testing.T, port, dnsPort int) *world {
	t.Helper()
	n := callouttest.NewNet()
	w := &world{net: n, port: port, targets: map[int]*callouttest.SMTPServer{}}
	w.dns = callouttest.StartDNS(t, n.Addr(53, dnsPort),
		"mx1.test. 60 IN MX 10 mxa.mx1.test.", "mx1.test. 60 IN MX 20 mxb.mx1.test.",
		"mxa.mx1.test. 60 IN A "+n.IP(3), "mxb.mx1.test. 60 IN A "+n.IP(7),
		"mx2.test. 60 IN MX 10 mxa.mx2.test.", "mx2.test. 60 IN MX 20 mxb.mx2.test.",
		"mxa.mx2.test. 60 IN A "+n.IP(9), "mxb.mx2.test. 60 IN A "+n.IP(7),
		"mx3.test. 60 IN MX 10 mxa.mx3.test.", "mx3.test. 60 IN MX 20 mxb.mx3.test.",
		"mxa.mx3.test. 60 IN A "+n.IP(7), "mxb.mx3.test. 60 IN A "+n.IP(6),
		"mx5.test. 60 IN MX 10 mxa.mx5.test.", "mx5.test. 60 IN MX 20 mxb.mx5.test.",
		"mxa.mx5.test. 60 IN A "+n.IP(5), "mxb.mx5.test. 60 IN A "+n.IP(7),
		"mx8.test. 60 IN MX 10 mxa.mx8.test.", "mx8.test. 60 IN MX 20 mxb.mx8.test.",
		"mxa.mx8.test. 60 IN A "+n.IP(8), "mxb.mx8.test. 60 IN A "+n.IP(7),
		"anoly.test. 60 IN A "+n.IP(7),
		"multi.test. 60 IN A "+n.IP(9), "multi.test. 60 IN A "+n.IP(7),
		"nullmx.test. 60 IN MX 0 .",
		"fast.test. 60 IN MX 10 mx.fast.test.", "mx.fast.test. 60 IN A "+n.IP(2),
	)
	for i, o := range map[int]callouttest.SMTPOptions{
		2: {},
		3: {Greeting: "421 4.3.2 busy"},
		5: {Greeting: "554 5.7.1 no service"},
		6: {Greeting: "220-fake multi\n220 second line"},
		7: {},
		8: {Greeting: "-"},
	} {
		w.targets[i] = callouttest.StartSMTP(t, n.Addr(i, port), o)
	}
	return w
}

// prober returns a prober for the world with the given soft timeout.
func (w *world) prober(timeout time.Duration) *smtpprobe.Prober {
	return &smtpprobe.Prober{
		Resolver: &smtpprobe.Resolver{Servers: []string{w.dns.Addr}, Timeout: 500 * time.Millisecond, Attempts: 2},
		Port:     w.port,
		Ehlo:     "callout.harness.test",
		Timeouts: smtpprobe.Timeouts{Connect: timeout, Initial: timeout, Helo: timeout, Mail: timeout,
			Rcpt: timeout, Rset: timeout, Quit: timeout},
	}
}

// testLogger logs to the test when -v, else discards.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startServer serves v on a free loopback port and returns its address.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = testLogger(t)
	}
	if srv.Verifier.Logger == nil {
		srv.Verifier.Logger = srv.Logger
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
		srv.Verifier.Close()
	})
	return ln.Addr().String()
}

// newMemCache returns a cache in memory.
func newMemCache() *cache.Cache { return &cache.Cache{Store: &cache.Memory{}} }

// transcript runs a script (one command per line; "#raw:" lines are sent
// as Go-quoted strings) against a calloutd at addr and returns the session
// as C:/S: lines.
func transcript(t *testing.T, addr string, script []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer cl.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "S: %s\n", cl.Greeting)
	for _, line := range script {
		fmt.Fprintf(&b, "C: %s\n", shorten(line))
		rp, err := cl.Do(ctx, line, nil)
		if err != nil {
			t.Fatalf("%s: %q: %v\nso far:\n%s", addr, line, err, b.String())
		}
		for _, l := range rp.Lines {
			fmt.Fprintf(&b, "S: * %s\n", l)
		}
		if rp.OK {
			fmt.Fprintf(&b, "S: OK%s\n", prefixSpace(rp.Text))
		} else {
			fmt.Fprintf(&b, "S: NO%s\n", prefixSpace(rp.Text))
		}
	}
	return b.String()
}

func prefixSpace(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

func shorten(s string) string {
	if len(s) > 60 {
		return fmt.Sprintf("%s... (%d bytes)", s[:40], len(s))
	}
	return s
}

// checkGoroutines fails when more goroutines run than before (after a grace
// period for the ones that are ending).
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutine leak: %d running, %d before\n%s", runtime.NumGoroutine(), before, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func errorsAs(err error, target any) bool { return err != nil && errors.As(err, target) }

// noLeaks checks, after everything the test started has been stopped,
// that no goroutine is left. Call it first in the test.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() { checkGoroutines(t, before) })
}
