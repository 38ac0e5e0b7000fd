package milter

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/testmilter"
	"github.com/mailmux/mailmux/pmult"
)

// reuseSession opens a session of b and runs a message through it.
func reuseSession(t *testing.T, b *Backend, ctx context.Context) *session {
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

// A connection whose SMTP session's context ended before Close (its stop
// fired, and sets a past deadline on the connection, perhaps after
// Close) is not kept: the next session opens its own, and reuse goes on.
func TestNotKeptAfterStopFired(t *testing.T) {
	m := &testmilter.Server{}
	addr := listen(t, m)
	b := New(Config{Name: "f", Network: "tcp", Address: addr, Reuse: true, ReadTimeout: 10 * time.Second, EOMTimeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	first := reuseSession(t, b, ctx)
	cancel()
	first.Close()
	if n := len(b.idle); n != 0 {
		t.Fatalf("%d connections kept, want 0", n)
	}
	second := reuseSession(t, b, context.Background())
	if second == first {
		t.Error("the connection of the cancelled session was reused")
	}
	second.Close()
	if n := len(b.idle); n != 1 || b.noQuitNC.Load() {
		t.Fatalf("after a clean session: %d kept (want 1), QUIT_NC off %v", n, b.noQuitNC.Load())
	}
	third := reuseSession(t, b, context.Background())
	if third != second {
		t.Error("the clean session's connection was not reused")
	}
	third.Close()
}

// A kept connection is left with its deadlines (release moves no
// timer); idle past both, it serves the next session, whose first write
// and read set new ones.
func TestReuseAfterDeadlinesPassed(t *testing.T) {
	m := &testmilter.Server{}
	addr := listen(t, m)
	b := New(Config{Name: "f", Network: "tcp", Address: addr, Reuse: true,
		ReadTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond, EOMTimeout: 50 * time.Millisecond})
	first := reuseSession(t, b, context.Background())
	first.Close()
	if n := len(b.idle); n != 1 {
		t.Fatalf("%d connections kept, want 1", n)
	}
	time.Sleep(200 * time.Millisecond) // both deadlines pass while idle
	second := reuseSession(t, b, context.Background())
	if second != first {
		t.Error("the kept connection was not reused")
	}
	if b.noQuitNC.Load() {
		t.Error("the reused connection failed: taken for a filter without QUIT_NC")
	}
	second.Close()
	if n := len(b.idle); n != 1 {
		t.Fatalf("after the second session: %d connections kept, want 1", n)
	}
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
