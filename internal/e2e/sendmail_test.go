// sendmail_test.go: a real private Sendmail 8.17 with pmult in front of
// two real milters (pymilter, mailfromd), and the same two milters chained
// by Sendmail itself (two INPUT_MAIL_FILTER lines): the queued mail must
// be the same. Also several messages in one SMTP session, which Sendmail
// sends without an ABORT after a completed message.

package e2e

import (
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// sendmailMFL (milter B): tempfails one recipient, deletes another, and at
// end of message adds, replaces, inserts and deletes headers, records
// whether it saw A's header, changes the sender and replaces the body.
const sendmailMFL = `prog envrcpt
do
  if $1 = "<temp@example.com>"
    tempfail 451 4.7.1 "greylisted, come back later"
  fi
done

prog eom
do
  header_add("X-Mailfromd", "yes")
  header_add("X-B-Saw-A", "saw " . current_header_count("X-A"))
  header_replace("X-Change-Me", "changed by B")
  header_insert("X-Inserted-B", "by B", 2)
  header_delete("X-Remove-Me")
  rcpt_delete("<gone@example.com>")
  set_from("<changed@example.org>")
  replbody("body replaced by B\r\nsecond line\r\n")
done
`

// sendmailPlanA (milter A, pymilter): rejects one recipient with a
// multi-line reply; at end of message adds, changes and inserts headers
// and adds a recipient.
var sendmailPlanA = realpeer.PyPlan{
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
}

// sendmailReplies are the rejections in swaks's transcript. Sendmail puts
// "<address>... " before the first line of a milter's multi-line reply
// to RCPT.
var sendmailReplies = []string{"550-5.7.1 <bad@example.com>... first line from A",
	"550 5.7.1 second line from A", "451 4.7.1 greylisted, come back later"}

// checkSendmailEdits checks one queued message for every edit of A and B.
func checkSendmailEdits(t *testing.T, what string, q realpeer.Queued) {
	t.Helper()
	if q.Sender != "<changed@example.org>" {
		t.Errorf("%s: sender %q, want <changed@example.org>", what, q.Sender)
	}
	if want := []string{"<good@example.com>", "<added@example.com>"}; !reflect.DeepEqual(q.Recipients, want) {
		t.Errorf("%s: recipients %q, want %q", what, q.Recipients, want)
	}
	for name, want := range map[string]string{"X-A": "added by A", "Subject": "changed by A",
		"X-Inserted-A": "top", "X-Mailfromd": "yes", "X-Change-Me": "changed by B",
		"X-Inserted-B": "by B", "X-B-Saw-A": "saw 1"} {
		if got := q.HeaderValues(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s = %q, want one %q", what, name, got, want)
		}
	}
	if v := q.HeaderValues("X-Remove-Me"); len(v) != 0 {
		t.Errorf("%s: X-Remove-Me not deleted: %q", what, v)
	}
	if string(q.Body) != "body replaced by B\nsecond line\n" {
		t.Errorf("%s: body %q", what, q.Body)
	}
}

// queuedHeaders is a queued message's header list without the headers
// that differ between runs (trace, ids, dates). Return-Path stays: in the
// qf file it is the constant "<$g>", present unless a milter removed it.
func queuedHeaders(q realpeer.Queued) []string {
	var out []string
	for _, h := range q.Headers {
		switch strings.ToLower(h[0]) {
		case "received", "date", "message-id", "x-mailer":
			continue
		}
		out = append(out, h[0]+":"+h[1])
	}
	return out
}

func describeQueued(qs []realpeer.Queued) string {
	var b strings.Builder
	for _, q := range qs {
		fmt.Fprintf(&b, "--- %s\n%s--- body:\n%s\n", q.QF, q.Raw, q.Body)
	}
	return b.String()
}

// TestSendmail runs Sendmail -> pmult -> A (pymilter), B (mailfromd), and
// Sendmail -> A, B chained by Sendmail itself, on the same milters.
func TestSendmail(t *testing.T) {
	realpeer.Require(t, "sendmail", "swaks", "pymilter", "mailfromd")
	specA, logA := realpeer.StartPyMilter(t, sendmailPlanA)
	specB := realpeer.StartMailfromd(t, sendmailMFL)
	mux, pm := startPmult(t, "", backend{"A", specA, ""}, backend{"B", specB, ""})
	viaPmult := realpeer.StartSendmail(t, realpeer.SendmailOptions{Milter: mux})
	chain := realpeer.StartSendmail(t, realpeer.SendmailOptions{Milters: []string{specA, specB}})

	send := func(sm *realpeer.Sendmail) (string, realpeer.Queued) {
		out, err := sm.Send(t, "--from", "orig@example.org",
			"--to", "good@example.com,bad@example.com,temp@example.com,gone@example.com",
			"--header", "Subject: original subject", "--header", "X-Remove-Me: please",
			"--header", "X-Change-Me: original", "--body", "original body")
		if err != nil {
			t.Fatalf("swaks: %v\n%s\npmult log:\n%s", err, out, pm.Output())
		}
		qs := sm.Queued(t)
		if len(qs) != 1 {
			t.Fatalf("want 1 queued message, got %d:\n%s\nswaks:\n%s\npmult log:\n%s", len(qs), describeQueued(qs), out, pm.Output())
		}
		return out, qs[0]
	}

	t.Run("edits", func(t *testing.T) {
		out, q := send(viaPmult)
		for _, want := range sendmailReplies {
			if !strings.Contains(out, want) {
				t.Errorf("SMTP transcript through pmult lacks %q:\n%s", want, out)
			}
		}
		checkSendmailEdits(t, "through pmult", q)
		if t.Failed() {
			t.Logf("queued through pmult:\n%s\npmult log:\n%s", describeQueued([]realpeer.Queued{q}), pm.Output())
		}

		t.Run("same as chain", func(t *testing.T) {
			chainOut, cq := send(chain)
			for _, want := range sendmailReplies {
				if !strings.Contains(chainOut, want) {
					t.Errorf("SMTP transcript of the chain lacks %q:\n%s", want, chainOut)
				}
			}
			checkSendmailEdits(t, "chain", cq)
			if q.Sender != cq.Sender {
				t.Errorf("sender: pmult %q, chain %q", q.Sender, cq.Sender)
			}
			if !reflect.DeepEqual(q.Recipients, cq.Recipients) {
				t.Errorf("recipients: pmult %q, chain %q", q.Recipients, cq.Recipients)
			}
			if got, want := queuedHeaders(q), queuedHeaders(cq); !reflect.DeepEqual(got, want) {
				t.Errorf("headers differ\npmult: %q\nchain: %q", got, want)
			}
			if string(q.Body) != string(cq.Body) {
				t.Errorf("body: pmult %q, chain %q", q.Body, cq.Body)
			}
			if t.Failed() {
				t.Logf("through pmult:\n%s\nchain:\n%s\npmult log:\n%s",
					describeQueued([]realpeer.Queued{q}), describeQueued([]realpeer.Queued{cq}), pm.Output())
			}
		})
	})

	// Three transactions in one SMTP session through pmult: a complete
	// message, directly another (Sendmail sends no ABORT in between), then
	// one cut by RSET (ABORT) and a third complete message.
	t.Run("one session", func(t *testing.T) {
		before := len(viaPmult.Queued(t))
		c, err := smtp.Dial(viaPmult.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		message := func(n int) {
			t.Helper()
			if err := c.Mail(fmt.Sprintf("from%d@example.org", n)); err != nil {
				t.Fatalf("message %d: MAIL: %v", n, err)
			}
			for _, r := range []string{"good@example.com", "bad@example.com", "temp@example.com"} {
				err := c.Rcpt(r)
				var te *textproto.Error
				switch {
				case r == "good@example.com" && err != nil:
					t.Fatalf("message %d: RCPT %s: %v", n, r, err)
				case r == "bad@example.com" && (!errors.As(err, &te) || te.Code != 550 ||
					te.Msg != "5.7.1 <bad@example.com>... first line from A\n5.7.1 second line from A"):
					t.Errorf("message %d: RCPT %s: %v, want 550 with A's two lines", n, r, err)
				case r == "temp@example.com" && (!errors.As(err, &te) || te.Code != 451 ||
					te.Msg != "4.7.1 greylisted, come back later"):
					t.Errorf("message %d: RCPT %s: %v, want 451 from B", n, r, err)
				}
			}
			w, err := c.Data()
			if err != nil {
				t.Fatalf("message %d: DATA: %v", n, err)
			}
			fmt.Fprintf(w, "From: from%d@example.org\nTo: good@example.com\nSubject: message %d\n"+
				"X-Change-Me: original %d\nX-Remove-Me: yes\n\nbody %d\n", n, n, n, n)
			if err := w.Close(); err != nil {
				t.Fatalf("message %d: end of data: %v\npmult log:\n%s", n, err, pm.Output())
			}
		}
		message(1)
		message(2)
		if err := c.Mail("aborted@example.org"); err != nil {
			t.Fatalf("MAIL before RSET: %v", err)
		}
		if err := c.Rcpt("good@example.com"); err != nil {
			t.Fatalf("RCPT before RSET: %v", err)
		}
		if err := c.Reset(); err != nil {
			t.Fatalf("RSET: %v", err)
		}
		message(3)
		if err := c.Quit(); err != nil {
			t.Errorf("QUIT: %v", err)
		}

		qs := viaPmult.Queued(t)[before:]
		if len(qs) != 3 {
			t.Fatalf("want 3 more queued messages, got %d:\n%s\npmult log:\n%s", len(qs), describeQueued(qs), pm.Output())
		}
		for i, q := range qs {
			checkSendmailEdits(t, fmt.Sprintf("message %d", i+1), q)
		}
		// A saw three messages on one connection, with each message's own
		// headers, and no ABORT after a completed message.
		evs := pyEvents(t, logA)
		conn := evs[len(evs)-1].Conn
		var stages []string
		var subjects []string
		for _, e := range evs {
			if e.Conn != conn {
				continue
			}
			switch e.Stage {
			case "mail", "eom", "abort":
				stages = append(stages, e.Stage)
			case "header":
				if len(e.Args) == 2 && e.Args[0] == "Subject" {
					subjects = append(subjects, e.Args[1])
				}
			}
		}
		if want := []string{"mail", "eom", "mail", "eom", "mail", "abort", "mail", "eom"}; !reflect.DeepEqual(stages, want) {
			t.Errorf("A's stages on its connection: %q, want %q", stages, want)
		}
		if want := []string{"message 1", "message 2", "message 3"}; !reflect.DeepEqual(subjects, want) {
			t.Errorf("A saw subjects %q, want %q", subjects, want)
		}
		if t.Failed() {
			t.Logf("queued:\n%s\npmult log:\n%s\nsendmail log:\n%s", describeQueued(qs), pm.Output(), viaPmult.Log())
		}
	})

	// A client that disconnects in the middle of a transaction: Sendmail
	// sends the milter only QUIT (no ABORT). The backends must see the
	// session end, and the next session must work.
	t.Run("disconnect mid-transaction", func(t *testing.T) {
		before := len(viaPmult.Queued(t))
		c, err := smtp.Dial(viaPmult.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("cut@example.org"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("good@example.com"); err != nil {
			t.Fatal(err)
		}
		c.Close()
		var conn int
		var stages []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			evs := pyEvents(t, logA)
			conn, stages = 0, nil
			for _, e := range evs {
				if e.Stage == "mail" && len(e.Args) > 0 && e.Args[0] == "<cut@example.org>" {
					conn = e.Conn
				}
				if conn != 0 && e.Conn == conn {
					stages = append(stages, e.Stage)
				}
			}
			if len(stages) > 0 && stages[len(stages)-1] == "close" || time.Now().After(deadline) {
				break
			}
		}
		if want := []string{"mail", "rcpt", "abort", "close"}; !reflect.DeepEqual(stages, want) {
			t.Errorf("A's stages after MAIL on the cut connection: %q, want %q (libmilter aborts on QUIT)", stages, want)
		}
		if out, err := viaPmult.Send(t, "--from", "orig@example.org", "--to", "good@example.com",
			"--header", "X-Change-Me: x", "--body", "after the cut"); err != nil {
			t.Fatalf("next session: %v\n%s\npmult log:\n%s", err, out, pm.Output())
		}
		qs := viaPmult.Queued(t)[before:]
		if len(qs) != 1 {
			t.Fatalf("want 1 more queued message (not the cut one), got %d:\n%s", len(qs), describeQueued(qs))
		}
		if q := qs[0]; q.Header("X-A") != "added by A" || q.Header("X-Mailfromd") != "yes" {
			t.Errorf("next session's message lacks the edits:\n%s\npmult log:\n%s", describeQueued(qs), pm.Output())
		}
	})
}
