// retire_test.go: a retired backend (replaced by a reload) keeps no
// connection for reuse.

package milter

import (
	"context"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	"github.com/mailmux/mailmux/pmult"
)

func TestRetireClosesInsteadOfParking(t *testing.T) {
	m := &testmilter.Server{}
	addr := listen(t, m)
	b := New(Config{Network: "tcp", Address: addr, Reuse: true})
	offer := pmult.Offer{Actions: pmult.ActModify, LeadingSpace: true, Version: 6}
	session := func() pmult.BackendSession {
		s, err := b.Open(context.Background(), pmult.OpenInfo{Offer: offer})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []pmult.Kind{pmult.KindMail, pmult.KindEOM} {
			if _, err := s.Handle(context.Background(), &pmult.Event{Kind: k, Args: []string{"<a@b>"}}); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	// Before a reload: an ended session is kept and reused.
	session().Close()
	session().Close()
	if n := m.Count(); n != 1 {
		t.Fatalf("%d connections before Retire, want 1 (reused)", n)
	}
	// A session open across the reload ends after it: closed, not kept.
	s := session()
	b.Retire()
	s.Close()
	b.mu.Lock()
	idle := len(b.idle)
	b.mu.Unlock()
	if idle != 0 {
		t.Errorf("%d idle connections after Retire, want 0", idle)
	}
	// Nothing was parked: the next session needs a connection of its own.
	session().Close()
	if n := m.Count(); n != 2 {
		t.Errorf("%d connections after Retire, want 2 (a new one for the next session)", n)
	}
}
