// breaker_load_test.go: the open budget and the breaker with opens in
// flight: a wedged backend (TCP accepted into the kernel backlog, OPTNEG
// never answered) holds up one session, not all; a burst of failures is
// one outage (1s), not 2^(n-1) seconds; an abandoned open is neutral; a
// healthy backend under load is never refused.

package milter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/breaker"
	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLog() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, nil)), lb
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startMilter serves a working test milter on addr.
func startMilter(t *testing.T, addr string) *testmilter.Server {
	t.Helper()
	m := &testmilter.Server{}
	if _, err := m.Listen("tcp", addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// listen serves m on a free loopback port until the test ends and
// returns its address.
func listen(t *testing.T, m *testmilter.Server) string {
	t.Helper()
	a, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return a.String()
}

// awaitRecovery opens until an open succeeds (ErrDown: try again soon)
// and returns how long that took; it fails the test after limit.
func awaitRecovery(t *testing.T, b *Backend, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		s, err := b.Open(context.Background(), pmult.OpenInfo{Deadline: time.Now().Add(2 * time.Second)})
		if err == nil {
			s.Close()
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("backend not used again %s after it came back: %v", limit, err)
		}
		if !errors.Is(err, pmult.ErrDown) {
			t.Logf("open while recovering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A backend that accepts TCP (the kernel's backlog) and never answers
// OPTNEG: with a 1.5 s open budget one session waits for it; the others,
// all opening at once, fail fast with ErrDown instead of each waiting the
// budget (or connect_timeout). Once a working milter listens there the
// backend is used again.
func TestWedgedBackendHoldsOneSession(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // never accepted
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	log, logs := testLog()
	b := New(Config{Name: "wedged", Network: "tcp", Address: addr, ConnectTimeout: 30 * time.Second, Log: log})

	const n = 20
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline := time.Now().Add(1500 * time.Millisecond)
	errs := make([]error, n)
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			s, err := b.Open(ctx, pmult.OpenInfo{Deadline: deadline})
			if err == nil {
				s.Close()
			}
			errs[i], took[i] = err, time.Since(start)
		}()
	}
	wg.Wait()
	waited := 0
	var slowestDown time.Duration
	for i, err := range errs {
		switch {
		case err == nil:
			t.Errorf("open %d succeeded against a backend that never answers", i)
		case errors.Is(err, pmult.ErrDown):
			slowestDown = max(slowestDown, took[i])
		default:
			waited++
			t.Logf("open %d waited %s: %v", i, took[i].Round(time.Millisecond), err)
			if !strings.Contains(err.Error(), "open budget") {
				t.Errorf("open %d: error %q does not name the open budget", i, err)
			}
		}
	}
	t.Logf("the %d others failed with ErrDown within %s (breaker.OpenStall %s)", n-waited, slowestDown.Round(time.Millisecond), breaker.OpenStall)
	if waited != 1 {
		t.Errorf("%d of %d concurrent opens waited on the wedged backend, want 1 (the rest fail fast)", waited, n)
	}
	if !strings.Contains(logs.String(), "backend is down") {
		t.Errorf("no down line logged:\n%s", logs)
	}

	// The wedged listener is replaced by a working milter.
	ln.Close()
	startMilter(t, addr)
	d := awaitRecovery(t, b, 5*time.Second)
	t.Logf("used again %s after the milter replaced the wedged listener", d.Round(time.Millisecond))
	if !strings.Contains(logs.String(), "backend is up again") {
		t.Errorf("no up line logged:\n%s", logs)
	}
}

// Issue 9.1: 50 sessions fail at once (a backend that was up closes every
// connection); the first failure trips the breaker for breaker.MinDown and the
// other 49 do not double it. The backend comes back at once: an open
// succeeds again within about breaker.MinDown, not after 30 s.
func TestBurstOfFailuresIsOneOutage(t *testing.T) {
	addr := freeAddr(t)
	m := &testmilter.Server{}
	if _, err := m.Listen("tcp", addr); err != nil {
		t.Fatal(err)
	}
	b := New(Config{Name: "burst", Network: "tcp", Address: addr, ConnectTimeout: 30 * time.Second})
	s, err := b.Open(context.Background(), pmult.OpenInfo{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	m.Stop()

	// The backend breaks: it accepts, and once all n opens are connected
	// it closes them together (they fail at once, as under load).
	const n = 50
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				break
			}
			if held = append(held, c); len(held) == n {
				for _, c := range held {
					c.Close()
				}
				held = nil
			}
		}
		for _, c := range held {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	deadline := time.Now().Add(3 * time.Second)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := b.Open(context.Background(), pmult.OpenInfo{Deadline: deadline})
			if err == nil {
				s.Close()
				t.Error("open succeeded against a broken backend")
				return
			}
			if !errors.Is(err, pmult.ErrDown) {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	ln.Close()
	t.Logf("%d of %d opens failed on the backend (the rest: breaker open)", failed, n)

	startMilter(t, addr)
	d := awaitRecovery(t, b, 5*time.Second)
	t.Logf("after %d concurrent failures, used again %s after the backend came back", failed, d.Round(time.Millisecond))
	if st := b.brk.State(); st.DownFor != 0 || st.Pending != 0 {
		t.Errorf("breaker after recovery: down for %s, %d pending", st.DownFor, st.Pending)
	}
}

// Issue 8.11: a probe abandoned by its MTA session (ctx cancelled) is no
// verdict on the backend: it is not "up again", the down period is kept,
// and the next probe may go at once; a probe that fails doubles it.
func TestAbandonedProbeIsNeutral(t *testing.T) {
	addr := freeAddr(t)
	log, logs := testLog()
	b := New(Config{Name: "neutral", Network: "tcp", Address: addr, ConnectTimeout: 30 * time.Second, Log: log})
	if _, err := b.Open(context.Background(), pmult.OpenInfo{}); err == nil || errors.Is(err, pmult.ErrDown) {
		t.Fatalf("first open: %v, want a connect error", err)
	}
	expire := b.brk.Expire // the down period is over
	state := func() (time.Duration, bool, int) {
		st := b.brk.State()
		return st.DownFor, st.Probing, st.Pending
	}
	if d, _, _ := state(); d != breaker.MinDown {
		t.Fatalf("down for %s after the first failure, want %s", d, breaker.MinDown)
	}
	ln, err := net.Listen("tcp", addr) // wedged: never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	expire()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.Open(ctx, pmult.OpenInfo{Deadline: time.Now().Add(20 * time.Second)})
		done <- err
	}()
	for { // the probe is pending
		if _, probing, _ := state(); probing {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	err = <-done
	if err == nil || errors.Is(err, pmult.ErrDown) || !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned probe: %v, want context.Canceled", err)
	}
	if d, probing, pending := state(); d != breaker.MinDown || probing || pending != 0 {
		t.Errorf("after the abandoned probe: down for %s (want %s, unchanged), probing %v, %d pending",
			d, breaker.MinDown, probing, pending)
	}
	if strings.Contains(logs.String(), "up again") {
		t.Errorf("an abandoned probe was taken for a success:\n%s", logs)
	}
	// The next session probes at once; its probe fails: 2s.
	_, err = b.Open(context.Background(), pmult.OpenInfo{Deadline: time.Now().Add(200 * time.Millisecond)})
	if err == nil || errors.Is(err, pmult.ErrDown) {
		t.Fatalf("probe after the abandoned one: %v, want a timeout", err)
	}
	if d, _, _ := state(); d != 2*breaker.MinDown {
		t.Errorf("down for %s after a failed probe, want %s", d, 2*breaker.MinDown)
	}
	// While down, everyone else fails fast.
	if _, err := b.Open(context.Background(), pmult.OpenInfo{}); !errors.Is(err, pmult.ErrDown) {
		t.Errorf("open while down: %v, want ErrDown", err)
	}
}

// A healthy backend under load is never refused: a cold burst waits for
// one negotiation, then every open goes, also when each negotiation is
// slow (here 200 ms) and hundreds are pending at once.
func TestHealthyBackendUnderLoadNeverRefused(t *testing.T) {
	m := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdOptNeg {
			time.Sleep(200 * time.Millisecond) // a busy filter
		}
		return nil
	}}
	a, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	b := New(Config{Name: "busy", Network: "tcp", Address: a.String()})
	for round := range 2 { // cold, then warm
		const n = 200
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := b.Open(context.Background(), pmult.OpenInfo{Deadline: time.Now().Add(10 * time.Second)})
				if err != nil {
					errs <- err
					return
				}
				s.Close()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: open refused or failed: %v", round, err)
		}
	}
}
