// quitnc_test.go: a filter that does not take QUIT_NC (mailfromd's
// gacopyz: "unknown command: K", and it closes the connection).

package milter

import (
	"context"
	"sync"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// The connection kept after the first session is closed by the filter
// when it reads QUIT_NC, after it was handed to the second session: the
// second session's commands go to a new connection and are answered,
// and from then on nothing is kept and QUIT_NC is not offered.
func TestReuseFilterWithoutQuitNC(t *testing.T) {
	proceed := make(chan struct{})
	var mu sync.Mutex
	var quitNCs int
	m := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdQuitNC {
			mu.Lock()
			quitNCs++
			mu.Unlock()
			<-proceed
			return testmilter.Close
		}
		return nil
	}}
	addr := listen(t, m)
	b := New(Config{Name: "f", Network: "tcp", Address: addr, Reuse: true})
	ctx := context.Background()
	offer := pmult.Offer{Version: 6}
	session := func(first bool) pmult.BackendSession {
		t.Helper()
		s, err := b.Open(ctx, pmult.OpenInfo{Offer: offer})
		if err != nil {
			t.Fatal(err)
		}
		if !first {
			close(proceed) // the filter closes the connection now
		}
		for _, ev := range []*pmult.Event{
			{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Port: 25, Address: "192.0.2.1"},
			{Kind: pmult.KindHelo, Arg: "client.example"},
			{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}},
			{Kind: pmult.KindRcpt, Args: []string{"<b@example.com>"}},
			{Kind: pmult.KindEOM},
		} {
			if r, err := s.Handle(ctx, ev); err != nil || r.Verdict != pmult.Continue {
				t.Fatalf("first %v: %s: %v %v", first, ev.Kind, r.Verdict, err)
			}
		}
		return s
	}
	s1 := session(true)
	if !s1.Caps().QuitNC {
		t.Fatal("a v6 filter's first session does not offer QUIT_NC")
	}
	s1.Close() // kept: QUIT_NC sent, the filter waits for proceed
	s2 := session(false)
	if s2.Caps().QuitNC {
		t.Error("QUIT_NC still offered after the filter closed on it")
	}
	s2.Close()
	s3, err := b.Open(ctx, pmult.OpenInfo{Offer: offer})
	if err != nil {
		t.Fatal(err)
	}
	if s3.Caps().QuitNC {
		t.Error("a new session offers QUIT_NC")
	}
	s3.Close()
	if n := m.Count(); n != 3 {
		t.Errorf("%d connections, want 3 (the first, its replacement in session 2, session 3)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if quitNCs != 1 {
		t.Errorf("the filter got %d QUIT_NC, want 1", quitNCs)
	}
}
