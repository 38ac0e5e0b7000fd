// reuse_test.go: backend connection reuse (QUIT_NC) with a real libmilter
// milter, and pmult on a unix socket in front of Postfix.

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// TestReuseLibmilter sends five messages in five SMTP sessions through
// Postfix -> pmult -> pymilter; the fourth's only recipient is rejected by
// the milter. With reuse = true one milter connection (one negotiation)
// serves the first four sessions: pmult ends each with QUIT_NC and
// libmilter starts over on the same connection. The fourth ends without
// an end of message, where libmilter would ignore QUIT_NC (and then the
// next CONNECT): that connection is closed and the fifth session gets a
// new one, at once. With reuse = false every session has its own
// connection. pymilter makes a new Python object, and so a new
// PyEvent.Conn number, for every session even on a reused connection (its
// close callback drops the object), so connections are counted by their
// "negotiate" events.
//
// The milter listens on TCP and, in the unix cases, on a unix socket,
// where pmult's connections are internal/unixconn's.
func TestReuseLibmilter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		reuse, unix bool
	}{{true, false}, {false, false}, {true, true}, {false, true}} {
		t.Run(fmt.Sprintf("reuse=%v,unix=%v", c.reuse, c.unix), func(t *testing.T) {
			t.Parallel()
			reuse := c.reuse
			realpeer.Require(t, "postfix", "swaks", "pymilter")
			plan := realpeer.PyPlan{
				Stages:     map[string]realpeer.PyStage{"rcpt": {Action: "reject", Match: "nobody@"}},
				EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py", Value: "seen"}},
			}
			var spec string
			var log func() []string
			if c.unix {
				spec = "unix:" + filepath.Join(realpeer.Dir(t), "py.sock")
				_, log = realpeer.StartPyMilterAt(t, spec, plan)
			} else {
				spec, log = realpeer.StartPyMilter(t, plan)
			}
			pf, p := muxPostfix(t, "", backend{"py", spec, fmt.Sprintf("reuse = %v\nread_timeout = \"5s\"", reuse)})

			const n = 5
			for i := 1; i <= n; i++ {
				args := []string{"--header", fmt.Sprintf("Subject: session %d", i)}
				if i == 4 {
					args = append(args, "--to", "nobody@example.com")
				}
				start := time.Now()
				out, err := pf.Send(t, args...)
				if took := time.Since(start); took > 3*time.Second {
					t.Errorf("session %d took %v", i, took)
				}
				if i == 4 {
					if rep := replyTo(out, "RCPT TO:"); !strings.HasPrefix(rep, "<** 5") {
						t.Errorf("session 4: reply to RCPT %q, want 5xx\n%s", rep, out)
					}
				} else if err != nil {
					t.Fatalf("session %d: swaks: %v\n%s", i, err, out)
				}
				// The session is over for the milter (QUIT_NC or QUIT seen,
				// libmilter called close) before the next one starts: so the
				// next session finds the connection back in pmult's pool.
				if !waitFor(5*time.Second, func() bool { return pyCount(t, log, "close") >= i }) {
					t.Fatalf("session %d: the milter never saw the session end", i)
				}
				time.Sleep(50 * time.Millisecond)
			}
			ds := pf.WaitDelivered(t, n-1, deliverTimeout)
			subjects := map[string]bool{}
			for _, d := range ds {
				if got := d.Header("X-Py"); got != "seen" {
					t.Errorf("%s: X-Py = %q, want seen\n%s", d.Header("Subject"), got, d.Raw)
				}
				subjects[d.Header("Subject")] = true
			}
			for _, i := range []int{1, 2, 3, 5} {
				if !subjects[fmt.Sprintf("session %d", i)] {
					t.Errorf("session %d not delivered (got %v)", i, subjects)
				}
			}
			if len(ds) != n-1 {
				t.Errorf("want %d deliveries, got:\n%s", n-1, describe(ds))
			}

			evs := pyEvents(t, log)
			var negotiations, connects int
			conns := map[int]bool{}
			for _, e := range evs {
				switch e.Stage {
				case "negotiate":
					negotiations++
				case "connect":
					connects++
					conns[e.Conn] = true
				}
			}
			wantNeg := n
			if reuse {
				wantNeg = 2
			}
			if negotiations != wantNeg || connects != n {
				t.Errorf("milter saw %d negotiations and %d connects, want %d and %d", negotiations, connects, wantNeg, n)
			}
			if len(conns) != n {
				t.Errorf("milter objects (PyEvent.Conn) %v, want %d", conns, n)
			}
			pyErrors(t, log)
			if l := logLine(settledLog(p), "backend failed"); l != "" {
				t.Errorf("pmult: %s", l)
			}
		})
	}
}

// TestUnixSocketListener: pmult listens on a unix socket in a directory
// user postfix can reach; Postfix's smtpd_milters names it.
func TestUnixSocketListener(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	spec, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py", Value: "via unix"}},
	})
	sock := "unix:" + filepath.Join(realpeer.Dir(t), "pmult.sock")
	listen, p := startPmultAt(t, sock, "", backend{"py", spec, ""})
	logPmultOnFailure(t, p)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: listen})

	out, err := pf.Send(t)
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if len(ds) != 1 || ds[0].Header("X-Py") != "via unix" {
		t.Fatalf("want one delivery with X-Py: via unix, got:\n%s", describe(ds))
	}
	if l := logHas(p, "listening", "unix:"); l == "" {
		t.Errorf("pmult did not log listening on the unix socket")
	}
	if l := logHas(p, "session=1"); l == "" {
		t.Errorf("pmult logged no session")
	}
}
