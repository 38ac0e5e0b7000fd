// postfix_test.go: real Postfix with pmult in front of real milters, and
// the same milters chained by Postfix itself: the delivered mail must be
// the same.

package e2e

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

const deliverTimeout = 20 * time.Second

// mailfromd: tempfails one recipient with a multi-line reply, adds a
// header, deletes another.
const chainMFL = `prog envrcpt
do
  if $1 = "<temp@example.com>"
    tempfail 451 4.7.1 "greylisted, come back later"
  fi
done

prog eom
do
  header_add("X-Mailfromd", "yes")
  header_delete("X-Remove-Me")
done
`

// TestPostfixSameAsChain sends one message through Postfix with
// smtpd_milters = A B C, then through Postfix with pmult in front of the
// same A B C, and compares the results: recipients, sender, every header,
// the body, and the SMTP replies. A (pymilter) rejects one recipient with
// a multi-line reply and adds, changes and inserts headers and adds a
// recipient; B (mailfromd) tempfails a recipient, adds and deletes
// headers; C (pymilter) changes the sender, deletes a recipient, replaces
// the body, and must see A's and B's headers (later milters see earlier
// edits).
func TestPostfixSameAsChain(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd")
	specA, logA := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"rcpt": {Action: "reject", Match: "bad@", Reply: &realpeer.PyReply{
				Code: "550", XCode: "5.7.1", Lines: []string{"first line from A", "second line from A"}}},
		},
		EOMActions: []realpeer.PyAction{
			{Op: "addheader", Name: "X-A", Value: "added by A"},
			{Op: "chgheader", Name: "Subject", Index: 1, Value: "changed by A"},
			{Op: "insheader", Name: "X-Inserted-A", Value: "top", Index: 1},
			{Op: "addrcpt", Addr: "<added@example.com>"},
		},
	})
	specB := realpeer.StartMailfromd(t, chainMFL)
	specC, logC := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{
			{Op: "chgfrom", Addr: "<changed@example.org>"},
			{Op: "delrcpt", Addr: "<gone@example.com>"},
			{Op: "replacebody", Body: "body replaced by C\r\nsecond line\r\n"},
			{Op: "addheader", Name: "X-C", Value: "added by C"},
		},
	})
	send := func(pf *realpeer.Postfix) string {
		out, err := pf.Send(t, "--from", "orig@example.org",
			"--to", "good@example.com,bad@example.com,temp@example.com,gone@example.com",
			"--header", "Subject: original subject", "--header", "X-Remove-Me: please",
			"--body", "original body")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		return out
	}

	chain := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: strings.Join([]string{
		realpeer.PostfixMilter(specA), realpeer.PostfixMilter(specB), realpeer.PostfixMilter(specC)}, " ")})
	chainOut := send(chain)
	chainDs := chain.WaitDelivered(t, 2, deliverTimeout)
	chainSawC := headersSeen(t, logC)

	mux, pm := startPmult(t, "", backend{"A", specA, ""}, backend{"B", specB, ""}, backend{"C", specC, ""})
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(mux)})
	muxOut := send(pf)
	ds := pf.WaitDelivered(t, 2, deliverTimeout)
	muxSawC := headersSeen(t, logC)

	for _, want := range []string{"550-5.7.1 first line from A", "550 5.7.1 second line from A",
		"451 4.7.1 greylisted, come back later"} {
		if !strings.Contains(muxOut, want) {
			t.Errorf("SMTP transcript through pmult lacks %q:\n%s", want, muxOut)
		}
		if !strings.Contains(chainOut, want) {
			t.Errorf("SMTP transcript of the chain lacks %q:\n%s", want, chainOut)
		}
	}
	m := byRecipient(ds)
	if len(ds) != 2 || m["good@example.com"].Raw == nil || m["added@example.com"].Raw == nil {
		t.Fatalf("through pmult: want deliveries to good@ and added@, got:\n%s\npmult log:\n%s", describe(ds), pm.Output())
	}
	d := m["good@example.com"]
	if d.ReturnPath != "changed@example.org" {
		t.Errorf("Return-Path %q, want changed@example.org", d.ReturnPath)
	}
	for name, want := range map[string]string{"X-A": "added by A", "Subject": "changed by A",
		"X-Inserted-A": "top", "X-Mailfromd": "yes", "X-C": "added by C"} {
		if got := d.Header(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if v := d.HeaderValues("X-Remove-Me"); len(v) != 0 {
		t.Errorf("X-Remove-Me not deleted: %q", v)
	}
	if string(d.Body) != "body replaced by C\nsecond line\n" {
		t.Errorf("body %q", d.Body)
	}
	// C sees what A and B did, in both setups.
	for _, h := range []string{"X-A", "X-Mailfromd", "X-Inserted-A"} {
		if !muxSawC[h] {
			t.Errorf("through pmult, C did not see %s (saw %v)", h, muxSawC)
		}
		if !chainSawC[h] {
			t.Errorf("in the chain, C did not see %s (saw %v)", h, chainSawC)
		}
	}
	// Same results as the chain.
	cm := byRecipient(chainDs)
	if got, want := keys(m), keys(cm); !reflect.DeepEqual(got, want) {
		t.Errorf("recipients: pmult %v, chain %v", got, want)
	}
	for rcpt, cd := range cm {
		md := m[rcpt]
		if md.ReturnPath != cd.ReturnPath {
			t.Errorf("%s: Return-Path pmult %q, chain %q", rcpt, md.ReturnPath, cd.ReturnPath)
		}
		if got, want := visibleHeaders(md), visibleHeaders(cd); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: headers differ\npmult: %q\nchain: %q", rcpt, got, want)
		}
		if string(md.Body) != string(cd.Body) {
			t.Errorf("%s: body pmult %q, chain %q", rcpt, md.Body, cd.Body)
		}
	}
	_ = logA
	if t.Failed() {
		t.Logf("through pmult:\n%s\nchain:\n%s\npmult log:\n%s", describe(ds), describe(chainDs), pm.Output())
	}
}

func keys(m map[string]realpeer.Delivered) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// headersSeen returns the header names the pymilter saw in its most
// recent message.
func headersSeen(t *testing.T, log func() []string) map[string]bool {
	t.Helper()
	evs := pyEvents(t, log)
	last := 0
	for i, e := range evs {
		if e.Stage == "mail" {
			last = i
		}
	}
	seen := map[string]bool{}
	for _, e := range evs[last:] {
		if e.Stage == "header" && len(e.Args) > 0 {
			seen[e.Args[0]] = true
		}
	}
	return seen
}
