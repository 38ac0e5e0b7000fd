// answer_test.go: what a client can tell from RUN's progress lines
// (Answer's methods), against our server and mailfromd's calloutd 8.15
// over the same targets and DNS: an answer from the cache, a domain
// without mail host, a host that did not reply in time (the soft
// timeout), a host that could not be reached.

package callout

import (
	"context"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/callouttest"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestAnswerAgainstBothServers(t *testing.T) {
	w := newWorld(t, 25, 53)
	w.dns.Add(t, `noaddr.test. 60 IN TXT "no mail here"`,
		"slow.test. 60 IN MX 10 mx.slow.test.", "mx.slow.test. 60 IN A "+w.net.IP(11))
	callouttest.StartSMTP(t, w.net.Addr(11, 25), callouttest.SMTPOptions{Delay: 1500 * time.Millisecond})
	realpeer.Require(t, "calloutd")
	servers := map[string]string{
		"ours":     startServer(t, &Server{Verifier: &Verifier{Prober: w.prober(time.Second), Cache: newMemCache()}, NoBackground: true}),
		"calloutd": realpeer.StartCalloutd(t, realpeer.CalloutdOptions{Nameserver: w.net.IP(53)}).Addr,
	}
	type want struct {
		result                                        Result
		cached, noHost, noContact, noReply, unreached bool
	}
	cases := []struct {
		req  Request
		both want  // the same from both servers
		ours *want // ours, when it says more
		// alt: another answer calloutd may give (its timing, not ours)
		alt *want
	}{
		{Request{Email: "good@mx1.test"}, want{result: Success}, nil, nil},
		{Request{Email: "good@mx1.test"}, want{result: Success}, &want{result: Success, cached: true}, nil},
		{Request{Email: "bad@mx3.test"}, want{result: NotFound}, nil, nil},
		// A cached not_found: our server says cached, mailfromd's says
		// nothing (it keeps not_found for a few seconds). On a loaded
		// machine calloutd was seen probing again instead (a clean-clone
		// CI run): the same not_found, with the host contacted.
		{Request{Email: "bad@mx3.test"}, want{result: NotFound, noContact: true}, &want{result: NotFound, cached: true}, &want{result: NotFound}},
		// Domains without mail host: our server says nohost, mailfromd's
		// contacts no host.
		{Request{Email: "a@nx.test"}, want{result: NotFound, noContact: true}, &want{result: NotFound, noHost: true}, nil},
		{Request{Email: "a@noaddr.test"}, want{result: NotFound, noContact: true}, &want{result: NotFound, noHost: true}, nil},
		{Request{Email: "a@nullmx.test"}, want{result: Failure, noContact: true}, &want{result: Failure, noHost: true}, nil},
		{Request{Email: "b@nx.test"}, want{result: NotFound, noContact: true}, &want{result: NotFound, noHost: true, cached: true}, nil},
		{Request{Email: "grey@mx3.test"}, want{result: TempFailure}, nil, nil},
		{Request{Email: "good@example.com", Mode: smtpprobe.HostOnly, Host: w.net.IP(12)}, want{result: TempFailure, unreached: true}, nil, nil},
		// Last: the single-process calloutd re-runs it at each RUN.
		{Request{Email: "good@slow.test"}, want{result: TempFailure, noReply: true}, nil, nil},
	}
	for name, addr := range servers {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cl, err := Dial(ctx, "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if err := cl.SetTimeouts(ctx, smtpprobe.Timeouts{Connect: time.Second, Initial: time.Second, Helo: time.Second,
				Mail: time.Second, Rcpt: time.Second, Rset: time.Second, Quit: time.Second}); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				a, err := cl.Check(ctx, c.req)
				if err != nil {
					t.Fatalf("%s: %v", c.req.Email, err)
				}
				w := c.both
				if name == "ours" && c.ours != nil {
					w = *c.ours
				}
				got := want{a.Result, a.Cached(), a.NoMailHost(), a.NoHostContacted(), a.NoReply(), a.Unreached()}
				if got != w && (name != "calloutd" || c.alt == nil || got != *c.alt) {
					t.Errorf("%s: got %+v, want %+v (lines %+v)", c.req.Email, got, w, a.Progress)
				}
			}
		})
	}
}
