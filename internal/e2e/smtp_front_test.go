// smtp_front_test.go: pmult's SMTP front (adapters/smtp, next hop
// adapters/smtp/relay) with real MTAs: Postfix using it as
// smtpd_proxy_filter in front of real milters (the delivered mail the same
// as Postfix's own smtpd_milters chain of the same milters), Postfix
// content_filter and Exim sending through it after the queue, the
// client's address forwarded (XFORWARD) to backends and next hop, a 30 MB
// message, a next hop that is down or refuses (451, nothing lost), and a
// backend failure applying its on_failure action as on the milter front.

package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// frontHost is the front's hostname: greeting, loop marker value.
const frontHost = "pmult.test.local"

// smtpFront is a running pmult with its SMTP front.
type smtpFront struct {
	addr   string // the SMTP front's "127.0.0.1:PORT"
	milter string // the milter front's libmilter spec
	p      *realpeer.Process
}

// startSMTPFront runs pmult with an SMTP front on a free port in mode
// ("before" or "after"), relaying to nextHop ("127.0.0.1:PORT"), trusting
// loopback's XFORWARD/XCLIENT, plus its milter front; extra are more
// [smtp] lines.
func startSMTPFront(t *testing.T, mode, nextHop, extra string, bs ...backend) smtpFront {
	t.Helper()
	port := realpeer.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	top := fmt.Sprintf(`[smtp]
listen = ["in=inet:%s"]
mode = %q
next_hop = "inet:%s"
xforward = true
trusted = ["127.0.0.0/8"]
hostname = %q
max_message = 40000000
next_hop_command_timeout = "10s"
next_hop_data_timeout = "30s"
%s
`, addr, mode, nextHop, frontHost, extra)
	spec, p := startPmult(t, top, bs...)
	realpeer.WaitTCP(t, addr, 10*time.Second)
	return smtpFront{addr: addr, milter: spec, p: p}
}

// normalizedHeaders is visibleHeaders without what differs between two
// runs of the same milters: DKIM's timestamp and signature, the
// verifier's quote of the signature, and the front's loop marker.
func normalizedHeaders(d realpeer.Delivered) []string {
	tsig := regexp.MustCompile(`\b(t|b)=[^;]*`)
	hb := regexp.MustCompile(`header\.b=\S+`)
	var out []string
	for _, h := range visibleHeaders(d) {
		name, value, _ := strings.Cut(h, ":")
		switch strings.ToLower(name) {
		case "x-mailmux-filtered":
			continue
		case "dkim-signature":
			value = tsig.ReplaceAllString(strings.Join(strings.Fields(value), " "), "$1=")
		case "authentication-results":
			value = hb.ReplaceAllString(value, "header.b=")
		}
		out = append(out, name+":"+value)
	}
	return out
}

// TestSMTPFrontProxySameAsChain sends the same message from 127.0.0.2
// through Postfix with smtpd_milters = A B S (A pymilter: rejects a
// recipient with a multi-line reply, adds and changes headers, adds a
// recipient, changes the sender; B mailfromd: tempfails a recipient, adds
// and deletes headers; S opendkim: signs), and through Postfix with
// smtpd_proxy_filter = pmult's SMTP front in front of the same A B S,
// relaying to Postfix's reinjection smtpd. Recipients, sender, headers
// (DKIM timestamps and signatures aside), body and the client's replies
// must be the same; the backends and the next hop see the client
// (127.0.0.2, forwarded by XFORWARD), and the relayed mail carries the
// loop marker.
func TestSMTPFrontProxySameAsChain(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd", "opendkim", "opendkim-genkey")
	specA, logA := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"rcpt": {Action: "reject", Match: "bad@", Reply: &realpeer.PyReply{
				Code: "550", XCode: "5.7.1", Lines: []string{"first line from A", "second line from A"}}},
		},
		EOMActions: []realpeer.PyAction{
			{Op: "addheader", Name: "X-A", Value: "added by A"},
			{Op: "chgheader", Name: "Subject", Index: 1, Value: "changed by A"},
			{Op: "addrcpt", Addr: "<added@example.com>"},
			{Op: "chgfrom", Addr: "<changed@example.org>"},
		},
	})
	specB := realpeer.StartMailfromd(t, chainMFL)
	key := realpeer.GenerateDKIMKey(t, "example.org", "test")
	specS := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "s", Key: key, InternalHosts: "127.0.0.0/8"})

	send := func(pf *realpeer.Postfix) string {
		t.Helper()
		out, err := pf.Send(t, "--local-interface", "127.0.0.2", "--from", "orig@example.org",
			"--to", "good@example.com,bad@example.com,temp@example.com",
			"--header", "From: orig@example.org", "--header", "Subject: original subject",
			"--header", "X-Remove-Me: please", "--body", "original body\nsecond line\n")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		return out
	}

	chain := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: strings.Join([]string{
		realpeer.PostfixMilter(specA), realpeer.PostfixMilter(specB), realpeer.PostfixMilter(specS)}, " ")})
	chainOut := send(chain)
	chainDs := chain.WaitDelivered(t, 2, deliverTimeout)

	reinject := realpeer.FreePort(t)
	front := startSMTPFront(t, "before", "127.0.0.1:"+strconv.Itoa(reinject), "",
		backend{"A", specA, ""}, backend{"B", specB, ""}, backend{"S", specS, ""})
	pf := realpeer.StartPostfixFilter(t, realpeer.PostfixOptions{}, realpeer.PostfixFilter{
		Mode: realpeer.FilterBeforeQueue, Filter: front.addr, ReinjectPort: reinject})
	muxOut := send(pf.Postfix)
	ds := pf.WaitDelivered(t, 2, deliverTimeout)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("through the SMTP front:\n%s\nchain:\n%s\npmult log:\n%s", describe(ds), describe(chainDs), tailString(front.p.Output(), 12000))
		}
	})

	for _, want := range []string{"550-5.7.1 first line from A", "550 5.7.1 second line from A",
		"451 4.7.1 greylisted, come back later"} {
		if !strings.Contains(muxOut, want) {
			t.Errorf("SMTP transcript through the SMTP front lacks %q:\n%s", want, muxOut)
		}
		if !strings.Contains(chainOut, want) {
			t.Errorf("SMTP transcript of the chain lacks %q:\n%s", want, chainOut)
		}
	}
	m, cm := byRecipient(ds), byRecipient(chainDs)
	if got, want := keys(m), keys(cm); !reflect.DeepEqual(got, want) || len(got) != 2 {
		t.Fatalf("recipients: SMTP front %v, chain %v (want good@ and added@)", got, want)
	}
	for rcpt, cd := range cm {
		md := m[rcpt]
		if md.ReturnPath != cd.ReturnPath || md.ReturnPath != "changed@example.org" {
			t.Errorf("%s: Return-Path SMTP front %q, chain %q, want changed@example.org", rcpt, md.ReturnPath, cd.ReturnPath)
		}
		if got, want := normalizedHeaders(md), normalizedHeaders(cd); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: headers differ\nSMTP front: %q\nchain:      %q", rcpt, got, want)
		}
		if string(md.Body) != string(cd.Body) {
			t.Errorf("%s: body SMTP front %q, chain %q", rcpt, md.Body, cd.Body)
		}
		if got := md.Header("X-Mailmux-Filtered"); got != frontHost {
			t.Errorf("%s: loop marker %q, want %q", rcpt, got, frontHost)
		}
		if sig := md.Header("DKIM-Signature"); !strings.Contains(sig, "d=example.org") {
			t.Errorf("%s: not signed through the SMTP front: %q", rcpt, sig)
		}
	}
	// XFORWARD: the backend saw the client, not Postfix ...
	var sawClient bool
	for _, e := range pyEvents(t, logA) {
		if e.Stage == "connect" && strings.Contains(strings.Join(e.Args, " "), "127.0.0.2") {
			sawClient = true
		}
	}
	if !sawClient {
		t.Errorf("backend A never saw the client 127.0.0.2 at connect: %v", pyEvents(t, logA))
	}
	// ... and so did the next hop.
	if !regexp.MustCompile(`postfix/reinject/smtpd\[\d+\]: \w+: client=\S+, orig_client=[^\s\[]*\[127\.0\.0\.2\]`).MatchString(pf.Log()) {
		t.Errorf("the next hop did not get the client 127.0.0.2 by XFORWARD:\n%s", tailString(pf.Log(), 6000))
	}
}

// TestSMTPFrontXCLIENT: a client (swaks) sends XCLIENT to the front,
// which trusts loopback: the backend sees the forwarded client, and the
// next hop, a Postfix that allows XCLIENT but not XFORWARD, gets it
// (address, name, login) by XCLIENT.
func TestSMTPFrontXCLIENT(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specA, logA := realpeer.StartPyMilter(t, otherPlan)
	hop := realpeer.StartPostfix(t, realpeer.PostfixOptions{ExtraMain: map[string]string{
		"smtpd_authorized_xforward_hosts": "",
		"mynetworks":                      "127.0.0.0/8 192.0.2.0/24", // the forwarded client may relay
	}})
	front := startSMTPFront(t, "before", hop.Addr(), "", backend{"A", specA, ""})
	swaks, err := realpeer.ToolPath("swaks")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(swaks, "--server", front.addr, "--from", "sender@example.org", "--to", "rcpt@example.com",
		"--xclient-addr", "192.0.2.7", "--xclient-name", "client.example", "--xclient-helo", "client-helo.example", "--xclient-login", "joe",
		"--header", "Subject: xclient").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s\npmult log:\n%s", err, out, tailString(front.p.Output(), 6000))
	}
	d := hop.WaitDelivered(t, 1, deliverTimeout)[0]
	if d.Header("X-Other") != "yes" {
		t.Errorf("not filtered: %s", d.Raw)
	}
	var saw bool
	for _, e := range pyEvents(t, logA) {
		if e.Stage == "connect" && strings.Contains(strings.Join(e.Args, " "), "192.0.2.7") {
			saw = true
		}
	}
	if !saw {
		t.Errorf("the backend never saw the client 192.0.2.7: %v", pyEvents(t, logA))
	}
	if !regexp.MustCompile(`postfix/smtpd\[\d+\]: \w+: client=client\.example\[192\.0\.2\.7\]`).MatchString(hop.Log()) {
		t.Errorf("the next hop did not take the client 192.0.2.7 by XCLIENT:\n%s", tailString(hop.Log(), 6000))
	}
	if !regexp.MustCompile(`client=client\.example\[192\.0\.2\.7\], sasl_method=XCLIENT, sasl_username=joe`).MatchString(hop.Log()) {
		t.Errorf("the next hop did not get the login joe by XCLIENT:\n%s", tailString(hop.Log(), 6000))
	}
	if !strings.Contains(d.Header("Received"), "(client.example [192.0.2.7])") {
		t.Errorf("Received %q: want the client's name and address", d.Header("Received"))
	}
}

// TestSMTPFrontBigMessage sends a 30 MB message through Postfix with the
// SMTP front as smtpd_proxy_filter (a signer and mailfromd behind it):
// delivered whole, byte for byte, signed.
func TestSMTPFrontBigMessage(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "mailfromd", "opendkim", "opendkim-genkey")
	key := realpeer.GenerateDKIMKey(t, "example.org", "test")
	specS := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "s", Key: key})
	specB := realpeer.StartMailfromd(t, chainMFL)
	reinject := realpeer.FreePort(t)
	front := startSMTPFront(t, "before", "127.0.0.1:"+strconv.Itoa(reinject), "",
		backend{"B", specB, ""}, backend{"S", specS, ""})
	pf := realpeer.StartPostfixFilter(t, realpeer.PostfixOptions{ExtraMain: map[string]string{"message_size_limit": "40000000"}},
		realpeer.PostfixFilter{Mode: realpeer.FilterBeforeQueue, Filter: front.addr, ReinjectPort: reinject})

	var body bytes.Buffer
	line := strings.Repeat("0123456789", 7) + "abcde\n"
	for i := 0; body.Len() < 30<<20; i++ {
		fmt.Fprintf(&body, "%08d ", i)
		body.WriteString(line)
	}
	data := filepath.Join(realpeer.Dir(t), "big.eml")
	msg := "From: sender@example.org\nTo: rcpt@example.com\nSubject: big\n\n" + body.String()
	if err := os.WriteFile(data, []byte(msg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := pf.Send(t, "--data", "@"+data); err != nil {
		t.Fatalf("swaks: %v\n%s\npmult log:\n%s", err, tailString(out, 3000), tailString(front.p.Output(), 6000))
	}
	d := pf.WaitDelivered(t, 1, 60*time.Second)[0]
	body.WriteString("\n") // swaks ends --data with a line end of its own (Postfix alone delivers it too)
	if got, want := sha256.Sum256(d.Body), sha256.Sum256(body.Bytes()); got != want || len(d.Body) != body.Len() {
		t.Errorf("body of %d bytes delivered as %d bytes (or changed); head %q tail %q", body.Len(), len(d.Body), d.Body[:min(len(d.Body), 40)], d.Body[max(0, len(d.Body)-40):])
	}
	if d.Header("X-Mailfromd") != "yes" || !strings.Contains(d.Header("DKIM-Signature"), "d=example.org") {
		t.Errorf("edits missing: X-Mailfromd %q, DKIM-Signature %q", d.Header("X-Mailfromd"), d.Header("DKIM-Signature"))
	}
}

// TestSMTPFrontEximAfterQueue: Exim queues the message and delivers it to
// pmult's SMTP front (after the queue), which relays it, edited, back to
// Exim's second port, where Exim delivers it. A message already carrying
// the front's own loop marker is relayed without being filtered again.
// With the next hop down the front answers 451 and the message stays in
// Exim's queue, to be delivered when the next hop is back.
func TestSMTPFrontEximAfterQueue(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "swaks", "pymilter", "exim")
	specA, logA := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{
			{Op: "addheader", Name: "X-A", Value: "added by A"},
			{Op: "addrcpt", Addr: "<added@example.com>"},
		},
	})

	t.Run("filtered", func(t *testing.T) {
		ret := realpeer.FreePort(t)
		front := startSMTPFront(t, "after", "127.0.0.1:"+strconv.Itoa(ret), "", backend{"A", specA, ""})
		ex := realpeer.StartExim(t, realpeer.EximOptions{Next: front.addr, ReturnPort: ret})
		if out, err := ex.Send(t, "--to", "b@example.com", "--header", "Subject: via exim"); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		ds := ex.WaitDelivered(t, 2, deliverTimeout)
		m := byRecipient(ds)
		for _, rcpt := range []string{"b@example.com", "added@example.com"} {
			d, ok := m[rcpt]
			if !ok {
				t.Fatalf("no delivery to %s: %s\npmult log:\n%s", rcpt, describe(ds), tailString(front.p.Output(), 8000))
			}
			if d.Header("X-A") != "added by A" || d.Header("X-Mailmux-Filtered") != frontHost || d.Header("Subject") != "via exim" {
				t.Errorf("%s: X-A %q, loop marker %q, Subject %q\n%s", rcpt, d.Header("X-A"), d.Header("X-Mailmux-Filtered"), d.Header("Subject"), d.Raw)
			}
		}
		before := pyCount(t, logA, "eom")
		// Our own marker: relayed, not filtered (A's session is aborted
		// once the marker is seen: no end of message, no X-A).
		if out, err := ex.Send(t, "--to", "c@example.com", "--header", "X-Mailmux-Filtered: "+frontHost); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		d := ex.WaitDelivered(t, 1, deliverTimeout)[0]
		if d.Recipient != "c@example.com" || d.Header("X-A") != "" {
			t.Errorf("a message with our loop marker was filtered again: %s", d.Raw)
		}
		if n := pyCount(t, logA, "eom"); n != before {
			t.Errorf("backend A saw %d more end of message for a message with our loop marker", n-before)
		}
		eximQueueEmpty(t, ex)
	})

	t.Run("next hop down", func(t *testing.T) {
		hop := realpeer.FreePort(t) // nothing listens yet
		front := startSMTPFront(t, "after", "127.0.0.1:"+strconv.Itoa(hop), "", backend{"A", specA, ""})
		ex := realpeer.StartExim(t, realpeer.EximOptions{Next: front.addr})
		if out, err := ex.Send(t, "--to", "d@example.com"); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		deadline := time.Now().Add(deliverTimeout)
		for !regexp.MustCompile(`== d@example.com .* defer .*451 4\.4\.1`).MatchString(ex.Log()) {
			if time.Now().After(deadline) {
				t.Fatalf("Exim never got 451 4.4.1 from the front\n%s\npmult log:\n%s", ex.Log(), tailString(front.p.Output(), 6000))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if q := ex.Queued(t); len(q) != 1 {
			t.Fatalf("Exim's queue %v, want the one message", q)
		}
		// The next hop comes up: Exim's next queue run delivers.
		sink := startSink(t, hop)
		msgs := sink.wait(t, 1, deliverTimeout)
		if !strings.Contains(msgs[0], "RCPT TO:<d@example.com>") || !strings.Contains(msgs[0], "X-Mailmux-Filtered: "+frontHost) {
			t.Errorf("the next hop got:\n%s", msgs[0])
		}
		eximQueueEmpty(t, ex)
	})
}

// eximQueueEmpty waits until Exim has removed every message from its
// queue (it does so just after the delivery it logs).
func eximQueueEmpty(t *testing.T, ex *realpeer.Exim) {
	t.Helper()
	if !waitFor(deliverTimeout, func() bool { return len(ex.Queued(t)) == 0 }) {
		t.Fatalf("Exim's queue still holds %v\n%s", ex.Queued(t), ex.Log())
	}
}

// TestSMTPFrontNextHopFailsAfterQueue: Postfix content_filter through the
// front, the next hop down, then refusing at connect (554 greeting): each
// time 451 to Postfix and the message stays in Postfix's queue.
func TestSMTPFrontNextHopFailsAfterQueue(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks")
	for _, c := range []struct {
		name  string
		start func(t *testing.T, port int)
		want  string
	}{
		{"down", func(*testing.T, int) {}, "451 4.4.1"},
		{"refusing", func(t *testing.T, port int) { startRefuser(t, port, "554 5.3.2 not now") }, "451 4.4.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			hop := realpeer.FreePort(t)
			c.start(t, hop)
			front := startSMTPFront(t, "after", "127.0.0.1:"+strconv.Itoa(hop), "")
			pf := realpeer.StartPostfixFilter(t, realpeer.PostfixOptions{}, realpeer.PostfixFilter{
				Mode: realpeer.FilterAfterQueue, Filter: front.addr})
			if out, err := pf.Send(t, "--header", "Subject: keep me"); err != nil {
				t.Fatalf("swaks: %v\n%s", err, out) // queued: Postfix accepted it
			}
			deadline := time.Now().Add(deliverTimeout)
			re := regexp.MustCompile(`postfix/filter/smtp\[\d+\]: \w+: .*status=deferred .*` + regexp.QuoteMeta(c.want))
			for !re.MatchString(pf.Log()) {
				if time.Now().After(deadline) {
					t.Fatalf("no deferral with %s\n%s\npmult log:\n%s", c.want, tailString(pf.Log(), 6000), tailString(front.p.Output(), 6000))
				}
				time.Sleep(50 * time.Millisecond)
			}
			if q := pf.Queue(); !strings.Contains(q, "sender@example.org") {
				t.Errorf("the message is not in Postfix's queue:\n%s", q)
			}
			if ds := pf.Deliveries(t); len(ds) != 0 {
				t.Errorf("delivered %d messages with the next hop failing", len(ds))
			}
		})
	}
}

// TestSMTPFrontNextHopFailsBeforeQueue: Postfix smtpd_proxy_filter
// through the front. With the next hop down, or refusing at connect, the
// client gets 451 and nothing is accepted (the client keeps the message);
// a recipient the next hop refuses is refused to the client with the next
// hop's answer, and the others are delivered.
func TestSMTPFrontNextHopFailsBeforeQueue(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks")
	for _, c := range []struct {
		name  string
		start func(t *testing.T, port int)
	}{
		{"down", func(*testing.T, int) {}},
		{"refusing", func(t *testing.T, port int) { startRefuser(t, port, "554 5.3.2 not now") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			hop := realpeer.FreePort(t)
			c.start(t, hop)
			front := startSMTPFront(t, "before", "127.0.0.1:"+strconv.Itoa(hop), "")
			pf := realpeer.StartPostfixFilter(t, realpeer.PostfixOptions{}, realpeer.PostfixFilter{
				Mode: realpeer.FilterBeforeQueue, Filter: front.addr, ReinjectPort: realpeer.FreePort(t)})
			out, err := pf.Send(t, "--header", "Subject: refused")
			if err == nil || !strings.Contains(out, "451 4.4.1") {
				t.Errorf("want 451 4.4.1 to the client, got (err %v):\n%s", err, out)
			}
			if q := pf.Queue(); strings.Contains(q, "sender@example.org") {
				t.Errorf("Postfix queued a message the next hop never took:\n%s", q)
			}
			if ds := pf.Deliveries(t); len(ds) != 0 {
				t.Errorf("delivered %d messages with the next hop failing", len(ds))
			}
			if n := strings.Count(settledLog(front.p), "next hop failed"); n == 0 {
				t.Errorf("pmult logged no next-hop failure:\n%s", tailString(front.p.Output(), 4000))
			}
		})
	}
	t.Run("refusing a recipient", func(t *testing.T) {
		t.Parallel()
		reinject := realpeer.FreePort(t)
		front := startSMTPFront(t, "before", "127.0.0.1:"+strconv.Itoa(reinject), "")
		pf := realpeer.StartPostfixFilter(t, realpeer.PostfixOptions{}, realpeer.PostfixFilter{
			Mode: realpeer.FilterBeforeQueue, Filter: front.addr, ReinjectPort: reinject,
			ReinjectOptions: map[string]string{
				"smtpd_recipient_restrictions": "check_recipient_access,inline:{nobody@example.com=REJECT},permit_mynetworks,reject",
			}})
		out, err := pf.Send(t, "--to", "good@example.com,nobody@example.com", "--header", "Subject: one refused")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		if !regexp.MustCompile(`RCPT TO:<nobody@example.com>\s*\n<\*\* 554 5\.7\.1 <nobody@example.com>: Recipient address rejected`).MatchString(out) {
			t.Errorf("the client did not get the next hop's refusal of nobody@:\n%s", out)
		}
		ds := pf.WaitDelivered(t, 1, deliverTimeout)
		if len(ds) != 1 || ds[0].Recipient != "good@example.com" {
			t.Errorf("want one delivery to good@, got:\n%s", describe(ds))
		}
	})
}

// TestSMTPFrontBackendFailure: a backend that is not there, with
// on_failure "tempfail" and "accept": the SMTP front (Postfix
// smtpd_proxy_filter) gives the client the same outcome as the milter
// front (Postfix smtpd_milters) of the same pmult.
func TestSMTPFrontBackendFailure(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specO, _ := realpeer.StartPyMilter(t, otherPlan)
	for _, action := range []string{"tempfail", "accept"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			dead := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
			reinject := realpeer.FreePort(t)
			front := startSMTPFront(t, "before", "127.0.0.1:"+strconv.Itoa(reinject), "",
				backend{"dead", dead, fmt.Sprintf("on_failure = %q", action)}, backend{"other", specO, ""})
			viaMilter := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(front.milter)})
			viaSMTP := realpeer.StartPostfixFilter(t, realpeer.PostfixOptions{}, realpeer.PostfixFilter{
				Mode: realpeer.FilterBeforeQueue, Filter: front.addr, ReinjectPort: reinject})
			outM, errM := viaMilter.Send(t, "--header", "Subject: failure")
			outS, errS := viaSMTP.Send(t, "--header", "Subject: failure")
			switch action {
			case "tempfail":
				if errM == nil || errS == nil || !strings.Contains(outM, "\n<** 4") || !strings.Contains(outS, "\n<** 4") {
					t.Errorf("want a 4xx through both fronts\nmilter front (err %v):\n%s\nSMTP front (err %v):\n%s", errM, outM, errS, outS)
				}
				if n := len(viaSMTP.Deliveries(t)) + len(viaMilter.Deliveries(t)); n != 0 {
					t.Errorf("%d deliveries with the backend failing and on_failure tempfail", n)
				}
			case "accept":
				if errM != nil || errS != nil {
					t.Fatalf("want 250 through both fronts\nmilter front (err %v):\n%s\nSMTP front (err %v):\n%s", errM, outM, errS, outS)
				}
				dm := viaMilter.WaitDelivered(t, 1, deliverTimeout)[0]
				ds := viaSMTP.WaitDelivered(t, 1, deliverTimeout)[0]
				if dm.Header("X-Other") != "yes" || ds.Header("X-Other") != "yes" {
					t.Errorf("X-Other: milter front %q, SMTP front %q", dm.Header("X-Other"), ds.Header("X-Other"))
				}
			}
			if logHas(front.p, "dead") == "" {
				t.Errorf("pmult did not log the dead backend:\n%s", tailString(front.p.Output(), 4000))
			}
		})
	}
}

// sink is a minimal SMTP next hop on a raw listener: it accepts every
// command and records each message's transaction (commands and data).
type sink struct {
	mu   sync.Mutex
	msgs []string
}

func startSink(t *testing.T, port int) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				s.serve(c)
			}()
		}
	}()
	return s
}

func (s *sink) serve(c net.Conn) {
	br := bufio.NewReader(c)
	io.WriteString(c, "220 sink.test ESMTP\r\n")
	var cur strings.Builder
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(l))
		cur.WriteString(strings.TrimRight(l, "\r\n") + "\n")
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			io.WriteString(c, "250-sink.test\r\n250 8BITMIME\r\n")
		case verb == "DATA":
			io.WriteString(c, "354 go\r\n")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				cur.WriteString(strings.TrimRight(l, "\r\n") + "\n")
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, cur.String())
			s.mu.Unlock()
			cur.Reset()
			io.WriteString(c, "250 2.0.0 stored\r\n")
		case verb == "QUIT":
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "250 2.0.0 ok\r\n")
		}
	}
}

func (s *sink) wait(t *testing.T, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		got := append([]string(nil), s.msgs...)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the next hop got %d of %d messages after %v", len(got), n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startRefuser listens on port and greets every connection with greeting,
// then closes it.
func startRefuser(t *testing.T, port int, greeting string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, greeting+"\r\n")
			c.Close()
		}
	}()
}

// tailString returns at most the last n bytes of s.
func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}
