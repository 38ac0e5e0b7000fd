// skewlog_test.go: a connection replaced after a skew says so at debug,
// once, naming the backend and why.

package milter

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSkewReplacementLogged(t *testing.T) {
	m := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdHeader {
			return []mp.Packet{{Code: mp.RespReject}}
		}
		return nil
	}}
	a, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	var out lockedBuf
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := New(Config{Name: "filterA", Network: "tcp", Address: a.String(), Log: log})
	ctx := context.Background()
	bs, err := b.Open(ctx, pmult.OpenInfo{Offer: pmult.Offer{Version: 6}})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	s := bs.(*session)
	do := func(ev *pmult.Event, want pmult.Verdict) {
		t.Helper()
		if r, err := s.Handle(ctx, ev); err != nil || r.Verdict != want {
			t.Fatalf("%s: %v %v, want %v", ev.Kind, r.Verdict, err, want)
		}
	}
	do(&pmult.Event{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Port: 25, Address: "192.0.2.1"}, pmult.Continue)
	do(&pmult.Event{Kind: pmult.KindHelo, Arg: "client.example"}, pmult.Continue)
	do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}}, pmult.Continue)
	do(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<r@example.com>"}}, pmult.Continue)
	s.Hold()
	evs := []*pmult.Event{{Kind: pmult.KindHeader, Name: "Subject", Value: " hi"}, {Kind: pmult.KindEOH}}
	for _, ev := range evs {
		if _, err := s.Post(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := s.Await(ctx, evs[0]); err != nil || r.Verdict != pmult.Reject {
		t.Fatalf("header: %v %v", r.Verdict, err)
	}
	if strings.Contains(out.String(), "replaced") {
		t.Fatalf("logged before the connection was replaced:\n%s", out.String())
	}
	do(&pmult.Event{Kind: pmult.KindAbort}, pmult.Continue)
	do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<b@example.org>"}}, pmult.Continue)
	do(&pmult.Event{Kind: pmult.KindAbort}, pmult.Continue)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(l, "connection replaced") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d replacement lines, want 1:\n%s", len(lines), out.String())
	}
	for _, want := range []string{"level=DEBUG", "backend=filterA", "verdict=reject", "answering=SMFIC_HEADER", "owed=1"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("replacement line lacks %q: %s", want, lines[0])
		}
	}
	if m.Count() != 2 {
		t.Errorf("%d connections, want 2", m.Count())
	}
}
