package meta1_test

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	m1 "github.com/mailmux/mailmux/adapters/meta1"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
	"github.com/mailmux/mailmux/sim/meta1"
)

// lockedBuf is a log sink for concurrent writers.
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

// TestDecisionLine: the MeTA1 front logs the same decision line as the
// milter front: the session id (MeTA1's "i") as queue id, the client, the
// backend whose verdict won and its text, the edits by backend.
func TestDecisionLine(t *testing.T) {
	pmulttest.NoLeaks(t)
	var logs lockedBuf
	signer := newFake("signer", func(ev *pmult.Event) pmult.Reply {
		if ev.Kind == pmult.KindEOM {
			return pmult.Reply{Edits: []pmult.Edit{{Kind: pmult.EditAddHeader, Name: "X-Signed", Value: " yes"}}}
		}
		return pmult.Reply{}
	})
	refuser := newFake("refuser", func(ev *pmult.Event) pmult.Reply {
		if ev.Kind == pmult.KindRcpt && strings.Contains(ev.Args[0], "refused") {
			return pmult.Reply{Verdict: pmult.Reject, Text: "550 5.7.1 no such user"}
		}
		return pmult.Reply{}
	})
	fx := start(t, func(s *m1.Server) {
		s.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}, signer, refuser)
	c := fx.dial(meta1sim.Config{})
	session(t, c, netip.MustParseAddr("192.0.2.7"), []string{"<b@example.com>", "<refused@example.net>"}, testMsg)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "msg=decision") })
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "msg=decision") {
			line = l
		}
	}
	for _, want := range []string{"level=INFO", "front=meta1", " qid=S", "client=client.example.org[192.0.2.7]",
		"from=<a@example.org>", "rcpts=1", "reply=accept", "at=eom", "refuser(connect=continue/", "rcpt=reject*2/",
		`edits="signer(add_header=1)"`} {
		if !strings.Contains(line, want) {
			t.Errorf("decision line lacks %q:\n%s", want, line)
		}
	}
	if n := strings.Count(logs.String(), "msg=decision"); n != 1 {
		t.Errorf("%d decision lines, want 1:\n%s", n, logs.String())
	}
}
