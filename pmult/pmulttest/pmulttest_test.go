package pmulttest_test

import (
	"testing"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// A scripted backend rejects one recipient; the harness drives a session
// through the engine and the backend records what it got.
func TestHarness(t *testing.T) {
	b := pmulttest.New("policy", pmulttest.Reader)
	b.Seq[pmult.KindRcpt] = []pmulttest.Step{{}, {Verdict: pmult.Reject, Text: "550 5.1.1 no such user"}}
	h := pmulttest.Open(t, &pmult.Engine{Slots: pmulttest.Slots(b)}, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	h.Mail()
	if r := h.Rcpt("b@example.net"); r.Verdict != pmult.Continue {
		t.Errorf("first rcpt = %+v", r)
	}
	if r := h.Rcpt("nobody@example.net"); r.Verdict != pmult.Reject || r.From != "policy" || r.Text != "550 5.1.1 no such user" {
		t.Errorf("second rcpt = %+v", r)
	}
	if got := b.KindsString(); got != "connect helo mail rcpt rcpt" {
		t.Errorf("backend got %q", got)
	}
	h.S.Close()
	if b.Closes() != 1 {
		t.Errorf("%d closes", b.Closes())
	}
}

// A synchronous backend (Sync) is driven through Handle only.
func TestSyncBackendHasNoPipeliner(t *testing.T) {
	b := pmulttest.New("sync", pmulttest.Reader)
	b.Sync = true
	s, err := b.Open(t.Context(), pmult.OpenInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(pmult.Pipeliner); ok {
		t.Error("a Sync backend's session implements Pipeliner")
	}
	p, err := pmulttest.New("pipe", pmulttest.Reader).Open(t.Context(), pmult.OpenInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(pmult.Pipeliner); !ok {
		t.Error("a default backend's session does not implement Pipeliner")
	}
	if _, err := s.Handle(t.Context(), &pmult.Event{Kind: pmult.KindConnect}); err != nil {
		t.Fatal(err)
	}
	if got := b.KindsString(); got != "connect" || b.Sessions()[0].Posts() != 0 {
		t.Errorf("got %q, %d posts", got, b.Sessions()[0].Posts())
	}
}
