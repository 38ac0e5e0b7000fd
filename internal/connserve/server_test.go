package connserve

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// lineConn is a toy protocol: the first line "hello" is the handshake
// (Ready), then every line is echoed.
type lineConn struct {
	s  *Server
	nc net.Conn
}

func (c *lineConn) Serve(ctx context.Context) {
	defer c.nc.Close()
	r := bufio.NewReader(c.nc)
	first := true
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if first && line == "hello\n" {
			c.s.Ready(c)
		}
		first = false
		if _, err := io.WriteString(c.nc, line); err != nil {
			return
		}
	}
}
func (c *lineConn) Drain() {}
func (c *lineConn) Close() { c.nc.Close() }

func start(t *testing.T, s *Server) string {
	t.Helper()
	s.NewConn = func(nc net.Conn) Conn { return &lineConn{s: s, nc: nc} }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends line and reports whether it came back (false: closed).
func roundTrip(t *testing.T, c net.Conn, line string) bool {
	t.Helper()
	if _, err := io.WriteString(c, line); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && got == line
}

// waitActive waits until the server tracks n connections.
func waitActive(t *testing.T, s *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.Active() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("active connections: %d, want %d", s.Active(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Silent connections (no handshake) holding every slot must not keep a real
// session out: the oldest silent one is closed to make room.
func TestSilentConnectionsDoNotStarveRealSessions(t *testing.T) {
	lb := &syncBuf{}
	s := &Server{Name: "test", MaxConns: 3, Handshake: true, Log: slog.New(slog.NewTextHandler(lb, nil))}
	addr := start(t, s)
	var silent []net.Conn
	for range 3 {
		silent = append(silent, dial(t, addr))
		waitActive(t, s, len(silent))
	}
	real := dial(t, addr)
	if !roundTrip(t, real, "hello\n") {
		t.Fatalf("a real session was refused while silent connections held every slot; log:\n%s", lb)
	}
	// The oldest silent connection was closed.
	silent[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("oldest silent connection: read %v, want EOF", err)
	}
	waitActive(t, s, 3)
	if l := lb.String(); !strings.Contains(l, "closing connections that have not negotiated") || !strings.Contains(l, "last_peer=127.0.0.1:") {
		t.Errorf("no eviction line naming the peer:\n%s", l)
	}
	if s.Pending() != 2 {
		t.Fatalf("pending: %d, want 2", s.Pending())
	}
	// Once every slot holds a session that negotiated, new ones are refused.
	for _, c := range silent[1:] {
		if !roundTrip(t, c, "hello\n") {
			t.Fatal("silent connection that negotiated late was closed")
		}
	}
	extra := dial(t, addr)
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection over the limit was served")
	}
	if !roundTrip(t, real, "still there\n") {
		t.Fatal("real session closed")
	}
}

var countRE = regexp.MustCompile(`count=(\d+)`)

// Refusals at the limit are logged as one line per interval with a count,
// not one line per connection.
func TestRefusalLogIsAggregated(t *testing.T) {
	lb := &syncBuf{}
	s := &Server{Name: "test", MaxConns: 1, LogInterval: time.Hour, Log: slog.New(slog.NewTextHandler(lb, nil))}
	addr := start(t, s)
	held := dial(t, addr)
	if !roundTrip(t, held, "hello\n") {
		t.Fatal("first connection not served")
	}
	const n = 200
	for range n {
		c := dial(t, addr)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		c.Read(make([]byte, 1)) // closed by the server
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	held.Close()
	s.Shutdown(ctx) // flushes the count
	lines := regexp.MustCompile(`connection limit reached`).FindAllString(lb.String(), -1)
	if len(lines) > 2 {
		t.Fatalf("%d refusal lines for %d refusals, want one line per interval:\n%.2000s", len(lines), n, lb)
	}
	total := 0
	for _, m := range countRE.FindAllStringSubmatch(lb.String(), -1) {
		k, _ := strconv.Atoi(m[1])
		total += k
	}
	if total != n {
		t.Fatalf("logged counts add up to %d, want %d:\n%s", total, n, lb)
	}
}

// A later interval gets its own line (the timer flushes the count).
func TestRefusalLogFlushesPerInterval(t *testing.T) {
	lb := &syncBuf{}
	s := &Server{Name: "test", MaxConns: 1, LogInterval: 20 * time.Millisecond, Log: slog.New(slog.NewTextHandler(lb, nil))}
	addr := start(t, s)
	held := dial(t, addr)
	if !roundTrip(t, held, "hello\n") {
		t.Fatal("first connection not served")
	}
	for range 2 {
		c := dial(t, addr)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		total := 0
		for _, m := range countRE.FindAllStringSubmatch(lb.String(), -1) {
			k, _ := strconv.Atoi(m[1])
			total += k
		}
		if total == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second refusal was never logged:\n%s", lb)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Connections one after another are served by one worker goroutine that
// waits for the next (no goroutine per connection once one idles), and
// Shutdown returns only when the idle workers are gone.
func TestWorkersReusedAndStopped(t *testing.T) {
	s := &Server{Name: "test"}
	s.NewConn = func(nc net.Conn) Conn { return &lineConn{s: s, nc: nc} }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); s.Serve(ln) }()
	before := runtime.NumGoroutine()
	peak := 0
	for i := range 20 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if !roundTrip(t, c, "line "+strconv.Itoa(i)+"\n") {
			t.Fatalf("connection %d not served", i)
		}
		c.Close()
		waitActive(t, s, 0)
		peak = max(peak, runtime.NumGoroutine())
	}
	if peak > before+2 {
		t.Errorf("%d goroutines after 20 connections one at a time (%d before): workers not reused", peak, before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-served
	if n := runtime.NumGoroutine(); n >= before {
		t.Errorf("%d goroutines after Shutdown, %d with the server running idle: idle workers left", n, before)
	}
}
