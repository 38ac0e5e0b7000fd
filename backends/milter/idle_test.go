// idle_test.go: a backend connection waiting for the next command pins no
// packet or write buffer: both go back to the backend's pool once no
// reply is owed (Backend.bufs).

package milter

import (
	"context"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

func TestIdleConnectionPinsNoBuffer(t *testing.T) {
	m := &testmilter.Server{Actions: mp.ActAddHeaders, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdHeader {
			if h, _ := mp.ParseHeader(p.Code, p.Data); h.Name == "X-Bad" {
				return []mp.Packet{{Code: mp.RespReplyCode, Data: []byte("550 5.7.1 no\x00")}}
			}
		}
		if p.Code == mp.CmdEOB {
			return []mp.Packet{{Code: mp.RespAddHeader, Data: []byte("X-F\x00yes\x00")}, {Code: mp.RespContinue}}
		}
		return nil
	}}
	addr := listen(t, m)
	b := New(Config{Name: "f", Network: "tcp", Address: addr, Reuse: true})
	ctx := context.Background()
	idle := func(where string) {
		t.Helper()
		if n := b.bufs.InUse(); n != 0 {
			t.Errorf("%s: %d buffers pinned, want 0", where, n)
		}
	}
	var sessions []pmult.BackendSession
	for range 3 {
		bs, err := b.Open(ctx, pmult.OpenInfo{Offer: pmult.Offer{Version: 6, Actions: pmult.ActAddHeaders}})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, bs)
		idle("after OPTNEG")
		s := bs.(*session)
		do := func(ev *pmult.Event, want pmult.Verdict) {
			t.Helper()
			r, err := s.Handle(ctx, ev)
			if err != nil || r.Verdict != want {
				t.Fatalf("%s: %v %v, want %v", ev.Kind, r.Verdict, err, want)
			}
			idle("after " + ev.Kind.String())
		}
		do(&pmult.Event{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Port: 25, Address: "192.0.2.1"}, pmult.Continue)
		do(&pmult.Event{Kind: pmult.KindHelo, Arg: "client.example"}, pmult.Continue)
		do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}}, pmult.Continue)
		do(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<r@example.com>"}}, pmult.Continue)
		// A batch: held, then flushed by the first Await, whose verdict
		// ends the message with a reply still owed (the connection is
		// replaced before the next command).
		s.Hold()
		evs := []*pmult.Event{{Kind: pmult.KindHeader, Name: "X-Bad", Value: " yes"}, {Kind: pmult.KindEOH}}
		for _, ev := range evs {
			if _, err := s.Post(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := s.Await(ctx, evs[0]); err != nil || r.Verdict != pmult.Reject {
			t.Fatalf("header: %v %v", r.Verdict, err)
		}
		do(&pmult.Event{Kind: pmult.KindAbort}, pmult.Continue)
		do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<b@example.org>"}}, pmult.Continue)
		do(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<r@example.com>"}}, pmult.Continue)
		do(&pmult.Event{Kind: pmult.KindEOH}, pmult.Continue)
		do(&pmult.Event{Kind: pmult.KindBody, Chunk: make([]byte, 20000)}, pmult.Continue)
		do(&pmult.Event{Kind: pmult.KindEOM}, pmult.Continue)
	}
	for _, s := range sessions {
		s.Close()
	}
	idle("kept for reuse")
}
