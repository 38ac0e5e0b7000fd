package realpeer

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEximTwoPorts: mail received on Port goes to Next (here Exim's own
// ReturnPort) and comes back delivered into the maildir; with Next down it
// stays in the queue.
func TestEximTwoPorts(t *testing.T) {
	ret := FreePort(t)
	ex := StartExim(t, EximOptions{Next: "127.0.0.1:" + strconv.Itoa(ret), ReturnPort: ret})
	if out, err := ex.Send(t, "--to", "b@example.com", "--header", "Subject: via exim"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ds := ex.WaitDelivered(t, 1, deliverTimeout)
	d := ds[0]
	if d.Recipient != "b@example.com" || d.ReturnPath != "sender@example.org" || d.Header("Subject") != "via exim" {
		t.Fatalf("delivered %q %q %q\n%s", d.Recipient, d.ReturnPath, d.Header("Subject"), d.Raw)
	}
	if n := len(d.HeaderValues("Received")); n != 2 {
		t.Fatalf("%d Received headers, want 2 (Port, then ReturnPort)\n%s", n, d.Raw)
	}

	down := StartExim(t, EximOptions{Next: "127.0.0.1:" + strconv.Itoa(FreePort(t))})
	if out, err := down.Send(t); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	deadline := time.Now().Add(deliverTimeout)
	for !strings.Contains(down.Log(), "defer (111)") {
		if time.Now().After(deadline) {
			t.Fatalf("no deferred delivery\n%s", down.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if q := down.Queued(t); len(q) != 1 {
		t.Fatalf("queue %v, want the one message", q)
	}
	if ds := down.Deliveries(t); len(ds) != 0 {
		t.Fatalf("delivered %d with the next hop down", len(ds))
	}
}

// TestPostfixFilterModes runs both filter modes with Postfix's own
// reinjection smtpd as the "filter" (no pmult): the plumbing alone.
func TestPostfixFilterModes(t *testing.T) {
	for _, mode := range []string{FilterBeforeQueue, FilterAfterQueue} {
		t.Run(mode, func(t *testing.T) {
			port := FreePort(t)
			pf := StartPostfixFilter(t, PostfixOptions{}, PostfixFilter{Mode: mode, Filter: "127.0.0.1:" + strconv.Itoa(port), ReinjectPort: port})
			if out, err := pf.Send(t, "--to", "b@example.com", "--header", "Subject: filtered"); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			d := pf.WaitDelivered(t, 1, deliverTimeout)[0]
			if d.Recipient != "b@example.com" || d.Header("Subject") != "filtered" {
				t.Fatalf("delivered %q %q\n%s", d.Recipient, d.Header("Subject"), d.Raw)
			}
			if !strings.Contains(pf.Log(), "postfix/reinject/smtpd") {
				t.Fatalf("the reinjection smtpd never ran\n%s", pf.Log())
			}
			if mode == FilterAfterQueue && !strings.Contains(pf.Log(), "postfix/filter/smtp") {
				t.Fatalf("the filter transport never ran\n%s", pf.Log())
			}
		})
	}
}
