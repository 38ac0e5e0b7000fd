package pmult_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/mailmux/mailmux/pmult"
)

// A stateless backend from a function, in an engine with one session
// driven by hand, as a front end drives it from the MTA's commands.
func Example() {
	block := pmult.Func("blocklist", pmult.Caps{}, func(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
		if ev.Kind == pmult.KindRcpt && strings.Contains(ev.Args[0], "@blocked.example") {
			return pmult.Reply{Verdict: pmult.Reject, Text: "550 5.7.1 recipient blocked"}, nil
		}
		return pmult.Reply{}, nil
	})
	e := &pmult.Engine{Slots: []pmult.Slot{{Backend: block, Policy: pmult.Policy{OnFailure: pmult.FailTempfail}}}}

	ctx := context.Background()
	s := e.NewSession("example", nil)
	defer s.Close()
	s.Open(ctx, pmult.Offer{Actions: pmult.ActModify}, nil)
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Address: "192.0.2.1"})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}})
	for _, rcpt := range []string{"<b@example.net>", "<c@blocked.example>"} {
		r := s.Handle(ctx, &pmult.Event{Kind: pmult.KindRcpt, Args: []string{rcpt}})
		if r.Verdict.Objects() {
			fmt.Printf("%s: %s by %s: %s\n", rcpt, r.Verdict, r.From, r.Text)
		} else {
			fmt.Printf("%s: %s\n", rcpt, r.Verdict)
		}
	}
	// Output:
	// <b@example.net>: continue
	// <c@blocked.example>: reject by blocklist: 550 5.7.1 recipient blocked
}
