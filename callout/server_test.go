// server_test.go: our server on its own: bad input, slow and silent peers
// and a DNS server that never answers while other clients are served,
// max-instances, shutdown, and no goroutine left behind.

package callout

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/callouttest"
	"github.com/mailmux/mailmux/callout/smtpprobe"
)

func TestBadInputAndSlowPeers(t *testing.T) {
	noLeaks(t)
	w := newWorld(t, 2525, 0)
	w.dns.Hang("hang.test")
	drip := callouttest.StartSMTP(t, w.net.Addr(20, 2525), callouttest.SMTPOptions{Drip: time.Second})
	_ = drip
	p := w.prober(time.Second)
	p.Resolver.Timeout, p.Resolver.Attempts = 300*time.Millisecond, 1
	srv := &Server{Verifier: &Verifier{Prober: p, Cache: newMemCache()}, NoBackground: true}
	addr := startServer(t, srv)

	// Client 1: garbage, overlong lines, and probes of a target that drips
	// one byte a second and of a domain whose DNS never answers (the
	// transcript ends only because the timeouts apply).
	var wg sync.WaitGroup
	var slowOut string
	wg.Add(1)
	go func() {
		defer wg.Done()
		slowOut = transcript(t, addr, []string{
			"RUN",
			"FOO bar",
			"\x00\x01\x02",
			strings.Repeat("x", 100000),
			"VRFY " + strings.Repeat("a", 2000) + "@example.com",
			"VRFY nobody",
			"VRFY x@",
			"VRFY <good@" + w.net.IP(2) + ">",
			"VRFY good@example.com mode=hostonly host=" + w.net.IP(20),
			"VRFY good@hang.test",
			"RUN",
			"QUIT",
		})
	}()

	// Meanwhile a client is served while another one's probe is known to
	// be waiting (for a DNS answer the test holds back until then): if
	// the server made clients wait for each other, the second transcript
	// would never end.
	ph := w.prober(time.Second)
	ph.Resolver.Timeout, ph.Resolver.Attempts = 10*time.Minute, 1 // longer than a transcript: only the release ends the wait
	srvH := &Server{Verifier: &Verifier{Prober: ph}, NoBackground: true}
	addrH := startServer(t, srvH)
	asked, release := w.dns.Hold(t, "held.test")
	heldOut := make(chan string, 1)
	go func() { heldOut <- transcript(t, addrH, []string{"VRFY good@held.test", "RUN", "QUIT"}) }()
	<-asked
	fast := transcript(t, addrH, []string{"VRFY good@fast.test", "RUN", "QUIT"})
	if !strings.Contains(fast, "OK 0000000000=success") {
		t.Errorf("second client, while the first waits:\n%s", fast)
	}
	release()
	if out := <-heldOut; !strings.Contains(out, "S: OK 0000000000=temp_failure\n") {
		t.Errorf("held client after the release:\n%s", out)
	}
	if st := srvH.Verifier.Stats(); st.Sessions != 2 || st.Results["success"] != 1 || st.Results["temp_failure"] != 1 {
		t.Errorf("stats of the held server: %+v", st)
	}

	wg.Wait()
	for _, want := range []string{
		"C: RUN\nS: OK\n",
		"C: FOO bar\nS: NO unknown command\n",
		"S: NO unknown command\n",
		"(100000 bytes)\nS: NO bad input\n",
		"(2017 bytes)\nS: NO bad input\n",
		"S: OK 0000000000=not_found 0000000001=failure 0000000002=not_found 0000000003=temp_failure 0000000004=temp_failure\n",
		"C: QUIT\nS: OK bye\n",
	} {
		if !strings.Contains(slowOut, want) {
			t.Errorf("missing %q in\n%s", want, slowOut)
		}
	}
	st := srv.Verifier.Stats()
	if st.ErrorReplies < 4 || st.Sessions != 1 {
		t.Errorf("stats: %+v", st)
	}

	// A client that sends nothing is dropped after the idle timeout; one
	// that never reads does not block the server.
	srv2 := &Server{Verifier: &Verifier{Prober: p}, IdleTimeout: 200 * time.Millisecond}
	addr2 := startServer(t, srv2)
	c, err := net.Dial("tcp", addr2)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 100)
	n, _ := c.Read(buf)
	if _, err := c.Read(buf[n:]); err == nil {
		t.Error("idle client not disconnected")
	}
	c.Close()
}

func TestMaxConnsAndShutdown(t *testing.T) {
	w := newWorld(t, 2525, 0)
	before := runtime.NumGoroutine()
	srv := &Server{Verifier: &Verifier{Prober: w.prober(time.Second)}, MaxConns: 1}
	srv.Logger = testLogger(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c1, err := Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// The second connection waits in the backlog for its greeting.
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c2.Read(make([]byte, 10)); err == nil {
		t.Error("second client greeted while the first is served (max 1)")
	}
	c1.Quit(ctx)
	c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 100)
	if n, err := c2.Read(b); err != nil || !strings.HasPrefix(string(b[:n]), "OK mailfromd") {
		t.Errorf("second client after the first left: %q %v", b[:n], err)
	}
	// Shutdown ends the idle session and Serve.
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-done; err != ErrServerClosed {
		t.Errorf("Serve: %v", err)
	}
	c2.Close()
	srv.Verifier.Close()
	checkGoroutines(t, before)
}

func TestBackgroundCompletion(t *testing.T) {
	noLeaks(t)
	w := newWorld(t, 2525, 0)
	slowOnce := callouttest.StartSMTP(t, w.net.Addr(21, 2525), callouttest.SMTPOptions{Greeting: "-"})
	_ = slowOnce
	v := &Verifier{Prober: w.prober(300 * time.Millisecond), Cache: newMemCache(),
		HardTimeouts: smtpprobe.Timeouts{Connect: time.Second, Initial: 2 * time.Second, Helo: time.Second,
			Mail: time.Second, Rcpt: time.Second, Rset: time.Second, Quit: time.Second}}
	addr := startServer(t, &Server{Verifier: v})
	// Never run: probed after QUIT, and the answer lands in the cache.
	transcript(t, addr, []string{"VRFY good@fast.test", "VRFY bad@fast.test", "QUIT"})
	deadline := time.Now().Add(5 * time.Second)
	for v.Stats().BgDone < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("background: %+v", v.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := transcript(t, addr, []string{"VRFY good@fast.test", "VRFY bad@fast.test", "RUN", "QUIT"})
	if !strings.Contains(out, "S: OK 0000000000=success 0000000001=not_found\n") || strings.Contains(out, "INIT") {
		t.Errorf("not answered from the cache:\n%s", out)
	}
	if st := v.Stats(); st.CacheHits != 2 || st.BgQueued != 2 {
		t.Errorf("stats %+v", st)
	}
}

// A client that goes away in the middle of RUN (pmult when its wait limit
// expires) does not cancel the probe: it completes and its answer is
// cached for the next client.
func TestClientGoneMidRun(t *testing.T) {
	noLeaks(t)
	w := newWorld(t, 2525, 0)
	w.dns.Add(t, "slowish.test. 60 IN MX 10 mx.slowish.test.", "mx.slowish.test. 60 IN A "+w.net.IP(22))
	slow := callouttest.StartSMTP(t, w.net.Addr(22, 2525), callouttest.SMTPOptions{Delay: 200 * time.Millisecond})
	v := &Verifier{Prober: w.prober(2 * time.Second), Cache: newMemCache()}
	addr := startServer(t, &Server{Verifier: v, NoBackground: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Vrfy(ctx, Request{Email: "good@slowish.test"}); err != nil {
		t.Fatal(err)
	}
	// Leave once the probe has reached the target.
	if _, err := cl.c.Write([]byte("RUN\r\n")); err != nil {
		t.Fatal(err)
	}
	for slow.Connections() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	cl.Close()
	deadline := time.Now().Add(5 * time.Second)
	for v.Stats().Results["success"] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the probe did not complete after the client left: %+v", v.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := transcript(t, addr, []string{"VRFY good@slowish.test", "RUN", "QUIT"})
	if !strings.Contains(out, "S: * 0000000000 cached success\nS: OK 0000000000=success\n") || slow.Connections() != 1 {
		t.Errorf("not answered from the cache (%d connections to the target):\n%s", slow.Connections(), out)
	}
}

// Update (calloutd's SIGHUP): new sessions get the new server settings
// (the session queue limit here), new requests the new Verifier settings
// (the prober's EHLO, the cache lifetimes on the same store), while the
// session that began before keeps its own.
func TestUpdate(t *testing.T) {
	noLeaks(t)
	w := newWorld(t, 2525, 0)
	store := &cache.Memory{}
	v := &Verifier{Prober: w.prober(time.Second), Cache: &cache.Cache{Store: store}}
	srv := &Server{Verifier: v, MaxQueue: 1, NoBackground: true}
	addr := startServer(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old, err := Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if rp, _ := old.Do(ctx, "GET ehlo", nil); len(rp.Lines) != 1 || rp.Lines[0] != "ehlo=callout.harness.test" {
		t.Fatalf("GET ehlo: %+v", rp)
	}
	before := transcript(t, addr, []string{"VRFY good@fast.test", "VRFY good2@fast.test", "RUN", "QUIT"})
	if !strings.Contains(before, "C: VRFY good2@fast.test\nS: NO too many addresses queued\n") {
		t.Fatalf("session queue of 1:\n%s", before)
	}

	p := w.prober(time.Second)
	p.Ehlo = "reloaded.test"
	v.Update(&Verifier{Prober: p, Cache: &cache.Cache{Store: store, Positive: time.Nanosecond}, Logger: v.Logger})
	srv.Update(&Server{MaxQueue: 2, NoBackground: true, Logger: srv.Logger})

	after := transcript(t, addr, []string{"GET ehlo", "VRFY good@fast.test", "VRFY good2@fast.test", "RUN", "VRFY good2@fast.test", "RUN", "QUIT"})
	for _, want := range []string{
		"S: * ehlo=reloaded.test\n",
		// Cached before the update, answered from the cache.
		"S: * 0000000000 cached success\n",
		"S: OK 0000000000=success 0000000001=success\n",
		// Stored for a nanosecond after it: probed again.
		"S: * 0000000002 INIT mx.fast.test\n",
	} {
		if !strings.Contains(after, want) {
			t.Errorf("after Update: missing %q in\n%s", want, after)
		}
	}
	// The session begun before keeps its queue limit.
	if _, err := old.Vrfy(ctx, Request{Email: "a@fast.test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Vrfy(ctx, Request{Email: "b@fast.test"}); !errorsAs(err, new(*ReplyError)) {
		t.Errorf("old session, second VRFY: %v, want NO (its limit is 1)", err)
	}
}

// A Server and Verifier given no Logger log nowhere: not to the process's
// slog.Default (global state), and otherwise serve as before.
func TestServerNilLoggerNotDefault(t *testing.T) {
	noLeaks(t)
	var buf strings.Builder
	var mu sync.Mutex
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	w := newWorld(t, 2525, 0)
	srv := &Server{Verifier: &Verifier{Prober: w.prober(time.Second)}, NoBackground: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	out := transcript(t, ln.Addr().String(), []string{"FOO", "VRFY good@fast.test", "RUN", "QUIT"})
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	<-done
	srv.Verifier.Close()
	if !strings.Contains(out, "S: OK 0000000000=success\n") {
		t.Errorf("session:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if buf.Len() != 0 {
		t.Errorf("logged to slog.Default:\n%s", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
