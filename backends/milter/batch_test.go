// batch_test.go: events posted ahead (pmult.Batcher) and a verdict that
// ends the message before their answers: libmilter ignores the rest of
// the message; a filter that answers it must not be read out of step.

package milter

import (
	"context"
	"sync"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// The filter rejects the message at its second header, while three
// headers and EOH are posted ahead in one batch. "ignores" answers
// nothing more of that message (libmilter's state machine), "answers"
// answers every command (emersion/go-milter). Either way the next message
// on the same session is read in step: the filter's TEMPFAIL to the second
// MAIL reaches the engine (a stale CONTINUE would not), on a new
// connection where the CONNECT and HELO were replayed.
func TestBatchVerdictBeforeOwedAnswers(t *testing.T) {
	for _, ignores := range []bool{true, false} {
		name := map[bool]string{true: "ignores", false: "answers"}[ignores]
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var logs [][]string
			rejected := map[*testmilter.Conn]bool{}
			m := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
				mu.Lock()
				defer mu.Unlock()
				if p.Code == mp.CmdOptNeg {
					logs = append(logs, nil)
					return nil
				}
				logs[len(logs)-1] = append(logs[len(logs)-1], string(p.Code))
				switch p.Code {
				case mp.CmdHeader:
					if h, _ := mp.ParseHeader(p.Code, p.Data); h.Name == "X-Bad" {
						rejected[c] = true
						return []mp.Packet{{Code: mp.RespReject}}
					}
				case mp.CmdMail:
					rejected[c] = false
					if a, _ := mp.ParseArgv(p.Code, p.Data); len(a) > 0 && a[0] == "<second@example.org>" {
						return []mp.Packet{{Code: mp.RespTempfail}}
					}
				}
				if ignores && rejected[c] {
					return []mp.Packet{} // libmilter: back in its HELO state, the command is ignored
				}
				return nil
			}}
			a, err := m.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer m.Stop()
			b := New(Config{Name: "f", Network: "tcp", Address: a.String()})
			ctx := context.Background()
			bs, err := b.Open(ctx, pmult.OpenInfo{Offer: pmult.Offer{Version: 6}})
			if err != nil {
				t.Fatal(err)
			}
			defer bs.Close()
			s := bs.(*session)
			do := func(ev *pmult.Event, want pmult.Verdict) {
				t.Helper()
				r, err := s.Handle(ctx, ev)
				if err != nil || r.Verdict != want {
					t.Fatalf("%s: %v %v, want %v", ev.Kind, r.Verdict, err, want)
				}
			}
			do(&pmult.Event{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Port: 25, Address: "192.0.2.1"}, pmult.Continue)
			do(&pmult.Event{Kind: pmult.KindHelo, Arg: "client.example"}, pmult.Continue)
			do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<first@example.org>"}}, pmult.Continue)
			do(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<r@example.com>"}}, pmult.Continue)
			s.Hold()
			evs := []*pmult.Event{
				{Kind: pmult.KindHeader, Name: "Subject", Value: " hi"},
				{Kind: pmult.KindHeader, Name: "X-Bad", Value: " yes"},
				{Kind: pmult.KindHeader, Name: "To", Value: " r@example.com"},
				{Kind: pmult.KindEOH},
			}
			for _, ev := range evs {
				if answer, err := s.Post(ctx, ev); err != nil || !answer {
					t.Fatalf("post %s: %v %v", ev.Kind, answer, err)
				}
			}
			for i, want := range []pmult.Verdict{pmult.Continue, pmult.Reject} {
				if r, err := s.Await(ctx, evs[i]); err != nil || r.Verdict != want {
					t.Fatalf("answer %d: %v %v, want %v", i, r.Verdict, err, want)
				}
			}
			// The engine awaits no more of this message.
			do(&pmult.Event{Kind: pmult.KindAbort}, pmult.Continue)
			do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<second@example.org>"}}, pmult.Tempfail)
			do(&pmult.Event{Kind: pmult.KindAbort}, pmult.Continue)
			do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<third@example.org>"}}, pmult.Continue)
			do(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<r@example.com>"}}, pmult.Continue)
			do(&pmult.Event{Kind: pmult.KindEOM}, pmult.Continue)
			mu.Lock()
			defer mu.Unlock()
			if len(logs) != 2 {
				t.Fatalf("%d connections, want 2 (the one out of step replaced): %q", len(logs), logs)
			}
			if got, want := logs[1], []string{"C", "H", "M", "A", "M", "R", "E"}; !equal(got, want) {
				t.Errorf("second connection saw %q, want %q", got, want)
			}
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
