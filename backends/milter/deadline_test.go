package milter

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/testmilter"
	"github.com/mailmux/mailmux/pmult"
)

// A kept connection whose previous SMTP session's context ended before
// Close (its stop set a past deadline on the connection) serves the next
// session: the deadlines kept by rdl and wdl are forgotten at reuse, so
// its first read and write set their own.
func TestReuseAfterStopFired(t *testing.T) {
	m := &testmilter.Server{}
	addr := listen(t, m)
	// One timeout for every read, so the last read's deadline would do
	// for the next session's first.
	b := New(Config{Name: "f", Network: "tcp", Address: addr, Reuse: true, ReadTimeout: 10 * time.Second, EOMTimeout: 10 * time.Second})
	session := func(ctx context.Context) *session {
		t.Helper()
		bs, err := b.Open(ctx, pmult.OpenInfo{Offer: pmult.Offer{Version: 6, Actions: pmult.ActAddHeaders}})
		if err != nil {
			t.Fatal(err)
		}
		s := bs.(*session)
		for _, ev := range []*pmult.Event{
			{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Port: 25, Address: "192.0.2.1"},
			{Kind: pmult.KindHelo, Arg: "client.example"},
			{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}},
			{Kind: pmult.KindRcpt, Args: []string{"<r@example.com>"}},
			{Kind: pmult.KindEOH}, {Kind: pmult.KindEOM},
		} {
			if r, err := s.Handle(ctx, ev); err != nil || r.Verdict != pmult.Continue {
				t.Fatalf("%s: %v %v", ev.Kind, r.Verdict, err)
			}
		}
		return s
	}
	first := session(context.Background())
	first.conn.SetDeadline(time.Unix(1, 0)) // what a fired stop does
	first.Close()
	if n := len(b.idle); n != 1 {
		t.Fatalf("%d connections kept, want 1", n)
	}
	conn := first.conn
	second := session(context.Background())
	if second != first || second.conn != conn {
		t.Error("the kept connection was not reused")
	}
	if b.noQuitNC.Load() {
		t.Error("the reused connection failed: taken for a filter without QUIT_NC")
	}
	second.Close()
}

// A kept connection logs with the logger of the SMTP session that reuses
// it, not of the one that opened it.
func TestReuseTakesSessionLog(t *testing.T) {
	m := &testmilter.Server{}
	addr := listen(t, m)
	b := New(Config{Name: "f", Network: "tcp", Address: addr, Reuse: true})
	ctx := context.Background()
	run := func(log *slog.Logger) *session {
		t.Helper()
		bs, err := b.Open(ctx, pmult.OpenInfo{Offer: pmult.Offer{Version: 6}, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		s := bs.(*session)
		for _, ev := range []*pmult.Event{{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Port: 25, Address: "192.0.2.1"},
			{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}}, {Kind: pmult.KindEOH}, {Kind: pmult.KindEOM}} {
			if _, err := s.Handle(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	first, second := slog.New(slog.DiscardHandler), slog.New(slog.DiscardHandler)
	s1 := run(first)
	s1.Close()
	s2 := run(second)
	defer s2.Close()
	if s2 != s1 {
		t.Fatal("not reused")
	}
	if s2.log != second {
		t.Error("the reused connection logs with the first SMTP session's logger")
	}
}
