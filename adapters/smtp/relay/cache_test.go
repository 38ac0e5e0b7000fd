package relay

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hopServer is a plain SMTP next hop (basic's answers, one closure per
// connection) that reports every line and every connection's end.
type hopServer struct {
	addr   string
	lines  chan string   // every line received, "<conn>" for each new connection
	ends   chan struct{} // one per connection the client closed
	hangUp func(line string) bool
}

func startHop(t *testing.T, ext ...string) *hopServer {
	t.Helper()
	return startHopWith(t, nil, ext...)
}

// startHopWith is startHop whose connections are closed by the server
// right after the answer to any line hangUp is true for.
func startHopWith(t *testing.T, hangUp func(string) bool, ext ...string) *hopServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hopServer{addr: "inet:" + ln.Addr().String(), lines: make(chan string, 10000), ends: make(chan struct{}, 100), hangUp: hangUp}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			h.lines <- "<conn>"
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				answer := basic(ext...)
				io.WriteString(c, "220 next.test ESMTP\r\n")
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						if err == io.EOF {
							h.ends <- struct{}{}
						}
						return
					}
					l = strings.TrimRight(l, "\r\n")
					h.lines <- l
					if l == "QUIT" {
						io.WriteString(c, "221 bye\r\n")
						continue // until the client closes
					}
					answer(c, l, nil)
					if h.hangUp != nil && h.hangUp(l) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return h
}

// seen drains the lines received so far.
func (h *hopServer) seen() []string { return drain(h.lines) }

// waitLine waits for line (a failure deadline, not a timing assertion).
func (h *hopServer) waitLine(t *testing.T, line string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l := <-h.lines:
			if l == line {
				return
			}
		case <-deadline:
			t.Fatalf("the next hop never got %q", line)
		}
	}
}

func (h *hopServer) waitEnds(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-h.ends:
		case <-deadline:
			t.Fatalf("%d of %d connections were closed by the relay", i, n)
		}
	}
}

func count(lines []string, line string) int {
	n := 0
	for _, l := range lines {
		if l == line {
			n++
		}
	}
	return n
}

// deliver runs one whole transaction and Closes it.
func deliver(t *testing.T, r *Relay, from string) {
	t.Helper()
	ctx := context.Background()
	tx, err := r.Begin(ctx, Origin{Addr: "192.0.2.1", Port: 25, Helo: "c.example", Proto: "ESMTP"}, from, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt(ctx, "rcpt@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Data(ctx, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Close(); err != nil {
		t.Fatal(err)
	}
}

// beginRcpt begins a transaction from from and adds the recipient to.
func beginRcpt(t *testing.T, r *Relay, from, to string) *Txn {
	t.Helper()
	ctx := context.Background()
	tx, err := r.Begin(ctx, Origin{}, from, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt(ctx, to, nil); err != nil {
		t.Fatal(err)
	}
	return tx
}

// beginAbort begins n transactions at once (n connections), then aborts
// them all.
func beginAbort(t *testing.T, r *Relay, n int) {
	t.Helper()
	var txs []*Txn
	for range n {
		tx, err := r.Begin(context.Background(), Origin{}, "a@example.org", nil)
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	for _, tx := range txs {
		tx.Abort()
	}
}

func TestRelayCacheReusesConnection(t *testing.T) {
	h := startHop(t, "XFORWARD NAME ADDR PORT PROTO HELO")
	r := newRelay(t, Config{Address: h.addr, XForward: true, Cache: true})
	for _, from := range []string{"a@example.org", "b@example.org", "c@example.org"} {
		deliver(t, r, from)
	}
	got := h.seen()
	if count(got, "<conn>") != 1 || count(got, "EHLO front.test") != 1 || count(got, "QUIT") != 0 {
		t.Fatalf("three messages should share one connection:\n%s", strings.Join(got, "\n"))
	}
	// XFORWARD is sent again before each MAIL (the next hop forgets it).
	var seq []string
	for _, l := range got {
		if strings.HasPrefix(l, "XFORWARD") || strings.HasPrefix(l, "MAIL") {
			seq = append(seq, l[:4])
		}
	}
	if strings.Join(seq, " ") != "XFOR MAIL XFOR MAIL XFOR MAIL" {
		t.Fatalf("commands:\n%s", strings.Join(got, "\n"))
	}
	if r.Idle() != 1 {
		t.Fatalf("%d idle connections, want 1", r.Idle())
	}
	r.Close()
	if r.Idle() != 0 {
		t.Fatalf("%d idle connections after Close", r.Idle())
	}
	h.waitLine(t, "QUIT")
	h.waitEnds(t, 1)
	// After Close nothing is cached: the next transaction ends with QUIT.
	deliver(t, r, "d@example.org")
	h.waitLine(t, "QUIT")
	h.waitEnds(t, 1)
}

func TestRelayCacheOffByDefault(t *testing.T) {
	h := startHop(t)
	r := newRelay(t, Config{Address: h.addr})
	deliver(t, r, "a@example.org")
	deliver(t, r, "b@example.org")
	got := h.seen()
	if count(got, "<conn>") != 2 || count(got, "QUIT") != 2 || r.Idle() != 0 {
		t.Fatalf("without Cache each message has its own connection:\n%s", strings.Join(got, "\n"))
	}
}

func TestRelayCacheAbortSendsRSET(t *testing.T) {
	h := startHop(t)
	r := newRelay(t, Config{Address: h.addr, Cache: true})
	defer r.Close()
	ctx := context.Background()
	tx := beginRcpt(t, r, "a@example.org", "x@example.com")
	if err := tx.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt(ctx, "y@example.com", nil); err == nil {
		t.Fatal("an ended Txn still takes recipients")
	}
	deliver(t, r, "b@example.org")
	got := h.seen()
	if count(got, "<conn>") != 1 || count(got, "RSET") != 1 || count(got, "QUIT") != 0 {
		t.Fatalf("an aborted transaction should end with RSET and its connection be reused:\n%s", strings.Join(got, "\n"))
	}
}

func TestRelayCacheRefusedRSETNotCached(t *testing.T) {
	b := basic()
	addr, lines := startScript(t, script{greet: "220 next.test ESMTP", answer: func(c net.Conn, l string, stop <-chan struct{}) bool {
		if l == "RSET" {
			io.WriteString(c, "502 5.5.1 no RSET here\r\n")
			return true
		}
		return b(c, l, stop)
	}})
	r := newRelay(t, Config{Address: addr, Cache: true})
	defer r.Close()
	tx, err := r.Begin(context.Background(), Origin{}, "a@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	tx.Abort()
	if r.Idle() != 0 {
		t.Fatal("a connection whose RSET was refused was cached")
	}
	if got := drain(lines); count(got, "QUIT") != 1 {
		t.Fatalf("want QUIT after the refused RSET:\n%s", strings.Join(got, "\n"))
	}
}

func TestRelayCacheDeadConnectionRedialled(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hangUp func(string) bool
		ext    []string
	}{
		{"closed after the message", func(l string) bool { return l == "." }, nil},
		{"closed at XFORWARD", func(l string) bool { return strings.HasPrefix(l, "XFORWARD") }, []string{"XFORWARD NAME ADDR"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen atomic.Int32
			hang := func(l string) bool { // the first time only (the next hop gives up an idle connection)
				if !tc.hangUp(l) {
					return false
				}
				n := seen.Add(1)
				return n == 1 && l == "." || n == 2 && l != "."
			}
			h := startHopWith(t, hang, tc.ext...)
			r := newRelay(t, Config{Address: h.addr, Cache: true, XForward: true})
			defer r.Close()
			deliver(t, r, "a@example.org")
			// The next hop may have hung up already or not: either way the
			// message goes through, on a second connection.
			deliver(t, r, "b@example.org")
			deliver(t, r, "c@example.org")
			got := h.seen()
			if n := count(got, "<conn>"); n < 2 {
				t.Fatalf("%d connections:\n%s", n, strings.Join(got, "\n"))
			}
		})
	}
}

func TestRelayCache421OnMailRedialled(t *testing.T) {
	var mu sync.Mutex
	mails := 0
	b := basic()
	addr, lines := startScript(t, script{greet: "220 next.test ESMTP", answer: func(c net.Conn, l string, stop <-chan struct{}) bool {
		if strings.HasPrefix(l, "MAIL") {
			mu.Lock()
			mails++
			n := mails
			mu.Unlock()
			if n == 2 { // the cached connection timed out at the next hop
				io.WriteString(c, "421 4.4.2 next.test Error: timeout exceeded\r\n")
				return false
			}
		}
		return b(c, l, stop)
	}})
	r := newRelay(t, Config{Address: addr, Cache: true})
	defer r.Close()
	deliver(t, r, "a@example.org")
	deliver(t, r, "b@example.org")
	got := drain(lines)
	if count(got, "EHLO front.test") != 2 {
		t.Fatalf("want a fresh connection after the 421:\n%s", strings.Join(got, "\n"))
	}
}

func TestRelayCacheRefusedMailKeepsConnection(t *testing.T) {
	b := basic()
	addr, lines := startScript(t, script{greet: "220 next.test ESMTP", answer: func(c net.Conn, l string, stop <-chan struct{}) bool {
		if strings.HasPrefix(l, "MAIL FROM:<bad@") {
			io.WriteString(c, "550 5.1.0 no\r\n")
			return true
		}
		return b(c, l, stop)
	}})
	r := newRelay(t, Config{Address: addr, Cache: true})
	defer r.Close()
	deliver(t, r, "a@example.org")
	if _, err := r.Begin(context.Background(), Origin{}, "bad@example.org", nil); err == nil ||
		ClientReply(err).Code != 550 {
		t.Fatalf("err %v, want the next hop's 550", err)
	}
	deliver(t, r, "c@example.org")
	got := drain(lines)
	if count(got, "EHLO front.test") != 1 || count(got, "QUIT") != 0 {
		t.Fatalf("a refused MAIL must neither redial nor drop the connection:\n%s", strings.Join(got, "\n"))
	}
}

func TestRelayCacheIdleTimeout(t *testing.T) {
	h := startHop(t)
	r := newRelay(t, Config{Address: h.addr, Cache: true, IdleTimeout: 10 * time.Millisecond})
	defer r.Close()
	deliver(t, r, "a@example.org")
	h.waitLine(t, "QUIT") // the idle connection is closed by its timer
	h.waitEnds(t, 1)
	if r.Idle() != 0 {
		t.Fatalf("%d idle connections after the idle timeout", r.Idle())
	}
	deliver(t, r, "b@example.org")
	if got := h.seen(); count(got, "<conn>") != 1 {
		t.Fatalf("want a new connection after the idle one was closed:\n%s", strings.Join(got, "\n"))
	}
}

func TestRelayCacheXClientNotReused(t *testing.T) {
	h := startHop(t, "XCLIENT NAME ADDR PORT PROTO HELO LOGIN")
	r := newRelay(t, Config{Address: h.addr, Cache: true, XForward: true})
	defer r.Close()
	deliver(t, r, "a@example.org")
	deliver(t, r, "b@example.org")
	got := h.seen()
	if count(got, "<conn>") != 2 || count(got, "QUIT") != 2 || r.Idle() != 0 {
		t.Fatalf("a connection that used XCLIENT must not be reused:\n%s", strings.Join(got, "\n"))
	}
}

func TestRelayCacheLimits(t *testing.T) {
	t.Run("reuse count", func(t *testing.T) {
		h := startHop(t)
		r := newRelay(t, Config{Address: h.addr, Cache: true, ReuseLimit: 1})
		defer r.Close()
		for range 3 {
			deliver(t, r, "a@example.org")
		}
		// 1st and 2nd (one reuse) on one connection, QUIT; 3rd on a new one.
		if got := h.seen(); count(got, "<conn>") != 2 || count(got, "QUIT") != 1 {
			t.Fatalf("reuse limit 1:\n%s", strings.Join(got, "\n"))
		}
	})
	t.Run("reuse time", func(t *testing.T) {
		h := startHop(t)
		r := newRelay(t, Config{Address: h.addr, Cache: true, ReuseTime: time.Nanosecond})
		defer r.Close()
		deliver(t, r, "a@example.org")
		deliver(t, r, "b@example.org")
		if got := h.seen(); count(got, "<conn>") != 2 || count(got, "QUIT") != 2 {
			t.Fatalf("reuse time limit passed: no reuse:\n%s", strings.Join(got, "\n"))
		}
	})
	t.Run("cache size", func(t *testing.T) {
		h := startHop(t)
		r := newRelay(t, Config{Address: h.addr, Cache: true, CacheSize: 1})
		defer r.Close()
		beginAbort(t, r, 3)
		if got := h.seen(); count(got, "<conn>") != 3 || count(got, "QUIT") != 2 || r.Idle() != 1 {
			t.Fatalf("cache size 1, 3 connections: %d idle\n%s", r.Idle(), strings.Join(got, "\n"))
		}
	})
}

// TestRelayCacheNoLeaks: Close closes every cached connection (the next hop
// sees each one end) and leaves no goroutine behind.
func TestRelayCacheNoLeaks(t *testing.T) {
	h := startHop(t)
	base := runtime.NumGoroutine()
	r := newRelay(t, Config{Address: h.addr, Cache: true})
	beginAbort(t, r, 4)
	if r.Idle() != 4 {
		t.Fatalf("%d idle, want 4", r.Idle())
	}
	r.Close()
	h.waitEnds(t, 4)
	// The next hop's 4 connection goroutines end with their connections.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func TestRelayFlush(t *testing.T) {
	h := startHop(t)
	r := newRelay(t, Config{Address: h.addr, Cache: true})
	defer r.Close()
	deliver(t, r, "a@example.org")
	r.Flush()
	h.waitEnds(t, 1)
	deliver(t, r, "b@example.org") // still caching after Flush
	if got := h.seen(); count(got, "<conn>") != 2 || count(got, "QUIT") != 1 || r.Idle() != 1 {
		t.Fatalf("after Flush:\n%s", strings.Join(got, "\n"))
	}
}

// TestRelayDataNoBufferPerMessage: Data copies through a pooled buffer, not
// a 32 KiB one of its own each message.
func TestRelayDataNoBufferPerMessage(t *testing.T) {
	h := startHop(t)
	r := newRelay(t, Config{Address: h.addr, Cache: true})
	defer r.Close()
	ctx := context.Background()
	msg := "Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 32)
	send := func() {
		tx := beginRcpt(t, r, "a@example.org", "b@example.com")
		if _, err := tx.Data(ctx, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
		tx.Close()
	}
	send()
	const n = 50
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		send()
		drain(h.lines)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per >= copyBuffer {
		t.Fatalf("%d bytes allocated per message (client and next hop together), want < %d", per, copyBuffer)
	}
}

// TestRelayXForwardAddressLiteralName: a client without a verified name
// (the front's "[address]") is forwarded as NAME=[UNAVAILABLE]: Postfix's
// smtpd answers 501 Bad NAME syntax to NAME=[192.0.2.1].
func TestRelayXForwardAddressLiteralName(t *testing.T) {
	for _, ext := range []string{"XFORWARD NAME ADDR", "XCLIENT NAME ADDR"} {
		h := startHop(t, ext)
		r := newRelay(t, Config{Address: h.addr, XForward: true})
		tx, err := r.Begin(context.Background(), Origin{Addr: "192.0.2.1", Name: "[192.0.2.1]"}, "a@example.org", nil)
		if err != nil {
			t.Fatal(err)
		}
		tx.Abort()
		verb, _, _ := strings.Cut(ext, " ")
		if got := h.seen(); count(got, verb+" NAME=[UNAVAILABLE] ADDR=192.0.2.1") != 1 {
			t.Errorf("%s:\n%s", verb, strings.Join(got, "\n"))
		}
	}
}

func TestRelayCacheLMTP(t *testing.T) {
	s := &sink{}
	r := newRelay(t, Config{Address: startSink(t, s, true), LMTP: true, Cache: true})
	defer r.Close()
	ctx := context.Background()
	for i := range 3 {
		tx := beginRcpt(t, r, "a@example.org", "b@example.com")
		per, err := tx.Data(ctx, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
		if err != nil || FoldLMTP(per) != nil {
			t.Fatalf("message %d: %v %v", i, err, per)
		}
		tx.Close()
		if r.Idle() != 1 {
			t.Fatalf("message %d: %d idle connections, want 1", i, r.Idle())
		}
	}
	if got := s.got(t); len(got) != 3 {
		t.Fatalf("%d messages delivered", len(got))
	}
}
