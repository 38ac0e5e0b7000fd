// relay_cache_test.go: the SMTP front's next-hop connection cache against
// a real Postfix smtpd as the next hop: several messages, one connection
// (the smtpd logs one connect), XFORWARD sent again for each message; with
// next_hop_cache = false, one connection per message; pmult's shutdown
// ends the cached connection with QUIT.

package e2e

import (
	"fmt"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestSMTPFrontNextHopCache(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	swaks, err := realpeer.ToolPath("swaks")
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	connects := regexp.MustCompile(`postfix/smtpd\[\d+\]: connect from `)
	disconnects := regexp.MustCompile(`disconnect from .*`)
	forwarded := regexp.MustCompile(`postfix/smtpd\[\d+\]: \w+: client=\S+, orig_client=\S*\[127\.0\.0\.1\]`)
	for _, c := range []struct {
		name  string
		extra string
		conns int
	}{
		// next_hop_idle well above the time between two messages here.
		{"cache", `next_hop_idle = "60s"`, 1},
		{"no cache", "next_hop_cache = false", n},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			specA, _ := realpeer.StartPyMilter(t, otherPlan)
			hop := realpeer.StartPostfix(t, realpeer.PostfixOptions{})
			front := startSMTPFront(t, "before", hop.Addr(), c.extra, backend{"A", specA, ""})
			for i := range n {
				out, err := exec.Command(swaks, "--server", front.addr, "--from", "sender@example.org", "--to", "rcpt@example.com",
					"--header", fmt.Sprintf("Subject: cached %d", i)).CombinedOutput()
				if err != nil {
					t.Fatalf("swaks: %v\n%s\npmult log:\n%s", err, out, tailString(front.p.Output(), 6000))
				}
			}
			ds := hop.WaitDelivered(t, n, deliverTimeout)
			for _, d := range ds {
				if d.Header("X-Other") != "yes" {
					t.Errorf("not filtered: %s", d.Raw)
				}
			}
			log := hop.Log()
			if got := len(connects.FindAllString(log, -1)); got != c.conns {
				t.Errorf("the next hop's smtpd logged %d connects for %d messages, want %d:\n%s", got, n, c.conns, tailString(log, 8000))
			}
			// pmult's shutdown ends the cached connection with QUIT: the
			// smtpd's one session carried every message.
			front.p.Stop()
			want := regexp.MustCompile(fmt.Sprintf(`disconnect from \S+ ehlo=1 xforward=%d mail=%d rcpt=%d data=%d quit=1 commands=\d+`,
				n/c.conns, n/c.conns, n/c.conns, n/c.conns))
			deadline := time.Now().Add(deliverTimeout)
			for len(want.FindAllString(hop.Log(), -1)) != c.conns {
				if time.Now().After(deadline) {
					t.Fatalf("want %d smtpd sessions (%s):\n%s", c.conns, want, tailString(hop.Log(), 8000))
				}
				time.Sleep(50 * time.Millisecond)
			}
			log = hop.Log()
			t.Logf("next hop: %q", disconnects.FindAllString(log, -1))
			if got := len(forwarded.FindAllString(log, -1)); got != n {
				t.Errorf("%d of %d messages reached the next hop with XFORWARD's client:\n%s", got, n, tailString(log, 8000))
			}
		})
	}
}
