// perf_test.go: the round-trip savings of issue 15 keep Postfix's
// behaviour: pmult lets Postfix not wait for replies to headers, EOH and
// body chunks (NR_HDR, NR_EOH, NR_BODY) and gives a verdict reached there
// at end of message. The SMTP replies, the deliveries and what Postfix
// logs must be those of Postfix's own chain of the same milters.

package e2e

import (
	"fmt"
	"net"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// TestPerfContentVerdictsSameAsChain: milter A answers one content event
// with a verdict (a header matched by its text, EOH, the body), milter B
// adds a header at end of message; Postfix chaining A B and Postfix in
// front of pmult (A, B) must give the same reply to the end of DATA,
// deliver the same (or nothing, or hold), and B's header must be there
// (or not) in both.
func TestPerfContentVerdictsSameAsChain(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	reply := &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"header refused by A"}}
	for _, tc := range []struct {
		name  string
		stage string
		st    realpeer.PyStage
		log   string // what Postfix logs in both setups ("" nothing to check)
	}{
		{"header reject with text", "header", realpeer.PyStage{Action: "reject", Match: "X-Trigger: yes", Reply: reply}, "milter-reject: END-OF-MESSAGE"},
		{"header reject", "header", realpeer.PyStage{Action: "reject", Match: "X-Trigger: yes"}, "milter-reject: END-OF-MESSAGE"},
		{"header tempfail", "header", realpeer.PyStage{Action: "tempfail", Match: "X-Trigger: yes"}, "milter-reject: END-OF-MESSAGE"},
		{"header discard", "header", realpeer.PyStage{Action: "discard", Match: "X-Trigger: yes"}, "milter triggers DISCARD action"},
		{"header accept", "header", realpeer.PyStage{Action: "accept", Match: "X-Trigger: yes"}, ""},
		{"eoh reject", "eoh", realpeer.PyStage{Action: "reject"}, "milter-reject: END-OF-MESSAGE"},
		{"body tempfail", "body", realpeer.PyStage{Action: "tempfail"}, "milter-reject: END-OF-MESSAGE"},
		{"body accept", "body", realpeer.PyStage{Action: "accept"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			specA, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
				Stages:     map[string]realpeer.PyStage{tc.stage: tc.st},
				EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-A", Value: "by A"}},
			})
			specB, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
				EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-B", Value: "by B"}},
			})
			send := func(pf *realpeer.Postfix) string {
				out, _ := pf.Send(t, "--header", "Subject: verdicts", "--header", "X-Trigger: yes",
					"--header", "X-After: more", "--body", "a body line")
				return replyTo(out, ".")
			}
			chain := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(specA) + " " + realpeer.PostfixMilter(specB)})
			pf, p := muxPostfix(t, "", backend{"A", specA, ""}, backend{"B", specB, ""})
			chainRep, muxRep := send(chain), send(pf)
			// The queue ids differ: compare the replies without them.
			if strip(chainRep) != strip(muxRep) {
				t.Errorf("reply to end of DATA: chain %q, pmult %q", chainRep, muxRep)
			}
			delivered := strings.HasPrefix(chainRep, "<-  250") && tc.log == ""
			var cds, mds []realpeer.Delivered
			if delivered {
				cds, mds = chain.WaitDelivered(t, 1, deliverTimeout), pf.WaitDelivered(t, 1, deliverTimeout)
			} else {
				time.Sleep(time.Second)
				cds, mds = chain.Deliveries(t), pf.Deliveries(t)
			}
			if len(cds) != len(mds) {
				t.Fatalf("chain delivered %d, pmult %d:\n%s", len(cds), len(mds), describe(mds))
			}
			for i := range cds {
				for _, h := range []string{"X-A", "X-B"} {
					if c, m := cds[i].Header(h), mds[i].Header(h); c != m {
						t.Errorf("%s: chain %q, pmult %q", h, c, m)
					}
				}
			}
			if tc.log != "" {
				for side, log := range map[string]string{"chain": chain.Log(), "pmult": pf.Log()} {
					if !strings.Contains(log, tc.log) {
						t.Errorf("%s: maillog lacks %q", side, tc.log)
					}
				}
			}
			if l := logLine(settledLog(p), "backend failed"); l != "" {
				t.Errorf("pmult: %s", l)
			}
		})
	}
}

// strip drops a queue id ("queued as ABC123") from a reply.
func strip(rep string) string {
	if i := strings.Index(rep, "queued as "); i >= 0 {
		return rep[:i]
	}
	return rep
}

// headerRejectMFL makes mailfromd reject a message with an X-Trigger
// header at that header, and add a header to the others.
const headerRejectMFL = `prog header
do
  if $1 = "X-Trigger"
    reject 550 5.7.1 "trigger refused by mailfromd"
  fi
done

prog eom
do
  header_add("X-Mailfromd", "yes")
done
`

// TestPerfPipelinedTwoMessages: one SMTP session, two messages. The first
// has a header a milter rejects at that header (pymilter, libmilter; or
// mailfromd, gacopyz), while pmult has posted the rest of the message
// ahead to it; the second must be served in step: the same replies and
// the same delivered headers as Postfix's own chain of the same milters.
// The other milter (pymilter) is replayed by pmult, in one batch.
func TestPerfPipelinedTwoMessages(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "pymilter", "mailfromd")
	for _, kind := range []string{"pymilter", "mailfromd"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var specA string
			if kind == "pymilter" {
				specA, _ = realpeer.StartPyMilter(t, realpeer.PyPlan{
					Stages: map[string]realpeer.PyStage{"header": {Action: "reject", Match: "X-Trigger: yes",
						Reply: &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"trigger refused by pymilter"}}}},
					EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-A", Value: "by A"}},
				})
			} else {
				specA = realpeer.StartMailfromd(t, headerRejectMFL)
			}
			specB, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
				EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-B", Value: "by B"}},
			})
			chain := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(specA) + " " + realpeer.PostfixMilter(specB)})
			pf, p := muxPostfix(t, "", backend{"A", specA, ""}, backend{"B", specB, ""})
			var reps [2][]string
			for i, side := range []*realpeer.Postfix{chain, pf} {
				r, err := twoMessages(side.Addr())
				if err != nil {
					t.Fatalf("SMTP: %v\nmaillog:\n%s", err, side.Log())
				}
				reps[i] = r
			}
			for i := range reps[0] {
				if strip(reps[0][i]) != strip(reps[1][i]) {
					t.Errorf("reply %d: chain %q, pmult %q", i, reps[0][i], reps[1][i])
				}
			}
			if !strings.HasPrefix(reps[1][0], "550") || !strings.HasPrefix(reps[1][1], "250") {
				t.Errorf("replies to the two end of DATA %q, want 550 then 250", reps[1])
			}
			cds, mds := chain.WaitDelivered(t, 1, deliverTimeout), pf.WaitDelivered(t, 1, deliverTimeout)
			if len(cds) != 1 || len(mds) != 1 {
				t.Fatalf("deliveries: chain %d, pmult %d", len(cds), len(mds))
			}
			if c, m := visibleHeaders(cds[0]), visibleHeaders(mds[0]); !reflect.DeepEqual(c, m) {
				t.Errorf("headers differ\nchain: %q\npmult: %q", c, m)
			}
			if l := logLine(settledLog(p), "backend failed"); l != "" {
				t.Errorf("pmult: %s", l)
			}
		})
	}
}

// twoMessages sends two messages in one SMTP session to addr, the first
// with "X-Trigger: yes", and returns the replies to their end of DATA.
func twoMessages(addr string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	tp := textproto.NewConn(c)
	cmd := func(code int, f string, a ...any) (string, error) {
		id, err := tp.Cmd(f, a...)
		if err != nil {
			return "", err
		}
		tp.StartResponse(id)
		defer tp.EndResponse(id)
		got, msg, err := tp.ReadResponse(code)
		return fmt.Sprintf("%d %s", got, msg), err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, err
	}
	if _, err := cmd(250, "EHLO client.example"); err != nil {
		return nil, err
	}
	var out []string
	for i, extra := range []string{"X-Trigger: yes\r\n", ""} {
		if _, err := cmd(250, "MAIL FROM:<sender@example.org>"); err != nil {
			return nil, err
		}
		if _, err := cmd(250, "RCPT TO:<rcpt@example.com>"); err != nil {
			return nil, err
		}
		if _, err := cmd(354, "DATA"); err != nil {
			return nil, err
		}
		msg := fmt.Sprintf("From: <sender@example.org>\r\nTo: <rcpt@example.com>\r\nSubject: message %d\r\n%sX-After: more\r\n\r\nbody %d\r\n.", i+1, extra, i+1)
		rep, _ := cmd(0, "%s", msg)
		out = append(out, rep)
	}
	cmd(221, "QUIT")
	return out, nil
}

// reuseMFL: mailfromd rejects one recipient and adds a header.
const reuseMFL = `prog envrcpt
do
  if $1 = "<nobody@example.com>"
    reject 550 5.1.1 "no such user"
  fi
done

prog eom
do
  header_add("X-Mailfromd", "yes")
done
`

// TestPerfReuseOpenDKIMMailfromd: connection reuse (QUIT_NC) with
// OpenDKIM (libmilter) and mailfromd (gacopyz) behind pmult, as with
// pymilter in TestReuseLibmilter: five SMTP sessions, the fourth's only
// recipient rejected by mailfromd (a session ending without an end of
// message). Every delivered message carries both milters' work, and no
// backend fails (a connection left in a state where the milter ignores
// QUIT_NC and the next CONNECT would time out and fail it).
func TestPerfReuseOpenDKIMMailfromd(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "opendkim", "opendkim-genkey", "mailfromd")
	key := realpeer.GenerateDKIMKey(t, "example.org", "test")
	signer := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "s", Key: key})
	mfd := realpeer.StartMailfromd(t, reuseMFL)
	extra := "reuse = true\nread_timeout = \"3s\""
	pf, p := muxPostfix(t, "", backend{"dkim", signer, extra}, backend{"mfd", mfd, extra})
	const n = 5
	for i := 1; i <= n; i++ {
		args := []string{"--from", "sender@example.org", "--header", fmt.Sprintf("Subject: session %d", i)}
		if i == 4 {
			args = append(args, "--to", "nobody@example.com")
		}
		out, err := pf.Send(t, args...)
		if i == 4 {
			if rep := replyTo(out, "RCPT TO:"); !strings.HasPrefix(rep, "<** 550") {
				t.Errorf("session 4: reply to RCPT %q, want 550", rep)
			}
		} else if err != nil {
			t.Fatalf("session %d: swaks: %v\n%s", i, err, out)
		}
	}
	ds := pf.WaitDelivered(t, n-1, deliverTimeout)
	if len(ds) != n-1 {
		t.Fatalf("want %d deliveries, got:\n%s", n-1, describe(ds))
	}
	for _, d := range ds {
		if d.Header("X-Mailfromd") != "yes" || !strings.Contains(d.Header("DKIM-Signature"), "d=example.org") {
			t.Errorf("%s: X-Mailfromd %q, DKIM-Signature %q", d.Header("Subject"), d.Header("X-Mailfromd"), d.Header("DKIM-Signature"))
		}
	}
	if l := logLine(settledLog(p), "backend failed"); l != "" {
		t.Errorf("pmult: %s", l)
	}
}
