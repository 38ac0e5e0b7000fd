// interop_test.go: the same protocol sessions against mailfromd's real
// calloutd 8.15 and against our Server, over the same SMTP targets (on
// port 25 of a private loopback block, since calloutd probes port 25 only)
// and the same in-process DNS server: the transcripts, progress lines
// included, must be identical. Our Client drives both, so this is also the
// test of our client against the real server. Our server's extra progress
// stages (cached, nohost) are left out of the comparison; the test of
// what they say, and of what mailfromd's lines say instead, is
// TestAnswerAgainstBothServers.

package callout

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/internal/realpeer"
)

func interopScripts(w *world) map[string][]string {
	ip := w.net.IP
	host := func(i int) string { return " mode=hostonly host=" + ip(i) }
	return map[string][]string{
		"1-results": {
			"RUN",
			"SID harness-1",
			"TIMEOUT 2 2 2 2 2 2 2",
			"GET ehlo mailfrom",
			"get ehlo timeout",
			"VRFY good@example.com" + host(2),
			"VRFY bad@example.com" + host(2),
			"VRFY grey@example.com" + host(2),
			"vrfy perm@example.com" + host(2),
			"Vrfy multi@example.com" + host(2),
			"VRFY weird@example.com" + host(2),
			"VRFY good1@example.com" + host(2) + " ehlo=probe.test mailfrom=verify@harness.test",
			"VRFY good2@example.com" + host(2) + " mailfrom=rej@x.test",
			"VRFY good3@example.com" + host(2) + " mailfrom=tmp@x.test",
			"VRFY good4@example.com" + host(2) + " ehlo=noehlo.test",
			"VRFY good5@example.com" + host(2) + " ehlo=rejhelo.test",
			"VRFY good6@example.com" + host(2) + " ehlo=tmphelo.test",
			"VRFY good7@example.com" + host(3),
			"VRFY good8@example.com" + host(5),
			"VRFY good9@example.com" + host(6),
			"VRFY good10@example.com" + host(9),
			"VRFY slow@example.com" + host(2),
			"VRFY drop@example.com" + host(2),
			"VRFY good11@example.com" + host(2) + " mailfrom=dropm@x.test",
			"VRFY good12@example.com" + host(2) + " starttls=never",
			// calloutd loses every entry queued after a dropped one: drop the last.
			"VRFY dropped@example.com" + host(2),
			"DROP 0000000020",
			"DROP 20",
			"RUN",
			"RUN",
			"QUIT",
		},
		// What mailfromd's own client (callout.mfl) sends: SET of the
		// session's EHLO, MAILFROM, STARTTLS and TRANSCRIPT, quoted
		// addresses. (calloutd drops the connection after the "NO bad
		// assignment" of an unknown name: not compared.)
		"4-mailfromd-client": {
			"SID local:",
			`SET TRANSCRIPT="ON"`,
			`SET STARTTLS="never"`,
			`SET EHLO="q\\\"x.test"`,
			`SET MAILFROM="<v@harness.test>"`,
			"GET ehlo mailfrom",
			`VRFY "good41@mx1.test"`,
			`VRFY "bad41@mx3.test" mode=hostonly host=` + ip(7),
			"VRFY good42@mx1.test",
			"RUN",
			`SET TRANSCRIPT="OFF"`,
			`SET EHLO=""`,
			"GET ehlo mailfrom",
			"QUIT",
		},
		"2-errors": {
			"VRFY x@example.com mode=bogus",
			"VRFY x@example.com mode=hostonly",
			"VRFY x@example.com mode=mxonly",
			"VRFY x@example.com mode=hostfirst",
			"VRFY x@example.com mode=HOSTONLY host=a",
			"VRFY x@example.com port=2525",
			"VRFY x@example.com =",
			"VRFY x@example.com host",
			"VRFY x@example.com starttls=bogus",
			"VRFY a b",
			"VRFY",
			"FOO",
			"",
			"   ",
			"DROP",
			"DROP abc",
			"DROP 99",
			"DROP 1 2",
			"TIMEOUT 1 2 3",
			"TIMEOUT a b c d e f g",
			"TIMEOUT 1 2 3 4 5 6 x",
			"TIMEOUT 1.5 2 3 4 5 6 7",
			"TIMEOUT 0 0 0 0 0 0 0",
			"SID",
			"SID a b",
			"SID " + strings.Repeat("b", 1017),
			"SID " + strings.Repeat("b", 1018),
			"SID " + strings.Repeat("b", 5000),
			"GET",
			"GET foo",
			"RUN x",
			"QUIT now",
			"quit",
		},
		"3-mx": {
			"TIMEOUT 2 2 2 2 2 2 2",
			"VRFY good@mx1.test",
			"VRFY good@mx2.test",
			"VRFY bad@mx3.test",
			"VRFY grey@mx3.test",
			"VRFY good@mx5.test",
			"VRFY good@mx8.test",
			"VRFY good@anoly.test",
			"VRFY good@nullmx.test",
			"VRFY good@nx.test",
			"VRFY good@x.test mode=mxonly host=anoly.test",
			"VRFY good2@x.test mode=mxonly host=mx3.test",
			"VRFY good@x.test mode=hostfirst host=mxa.mx2.test",
			"VRFY good3@x.test mode=hostfirst host=anoly.test",
			// Not compared: calloutd tries one address of a name only
			// (good@multi.test: first refused, second accepting) and, in
			// mxfirst mode, ignores host= (the manual says it is the domain).
			"VRFY nobody",
			"RUN",
			"VRFY good@mx1.test",
			"RUN",
			"QUIT",
		},
	}
}

func TestInteropWithRealCalloutd(t *testing.T) {
	realpeer.Require(t, "calloutd")
	w := newWorld(t, 25, 53)
	p := w.prober(2 * time.Second)
	p.ContinueAfterTempFail = true // calloutd's MX walk, for identical progress lines
	ours := startServer(t, &Server{Verifier: &Verifier{Prober: p, Cache: newMemCache()}})

	scripts := interopScripts(w)
	for _, name := range []string{"1-results", "2-errors", "3-mx", "4-mailfromd-client"} {
		t.Run(name, func(t *testing.T) {
			// --single-process calloutd shares its queue between clients:
			// one calloutd per session.
			real := realpeer.StartCalloutd(t, realpeer.CalloutdOptions{Nameserver: w.net.IP(53)})
			got := withoutExtensions(transcript(t, ours, scripts[name]))
			want := transcript(t, real.Addr, scripts[name])
			if got != want {
				t.Errorf("transcripts differ\n%s", diffLines(want, got))
			}
			if d := os.Getenv("CALLOUT_INTEROP_DUMP"); d != "" {
				os.WriteFile(filepath.Join(d, name+".calloutd"), []byte(want), 0o644)
				os.WriteFile(filepath.Join(d, name+".ours"), []byte(got), 0o644)
			}
			if testing.Verbose() {
				t.Logf("calloutd transcript:\n%s", want)
			}
		})
	}

	// After QUIT, both complete in the background what was never run
	// (calloutd does that only when it forks).
	real := realpeer.StartCalloutd(t, realpeer.CalloutdOptions{Nameserver: w.net.IP(53), Fork: true})
	for _, s := range []struct{ name, addr string }{{"calloutd", real.Addr}, {"ours", ours}} {
		local := "good-bg-" + s.name
		before := len(w.targets[7].Log())
		transcript(t, s.addr, []string{"VRFY " + local + "@example.com mode=hostonly host=" + w.net.IP(7), "QUIT"})
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(strings.Join(w.targets[7].Log()[before:], "\n"), "RCPT TO:<"+local+"@example.com>") {
			if time.Now().After(deadline) {
				t.Errorf("%s: no background probe after QUIT", s.name)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestClientAgainstRealCalloutd drives the real calloutd with the typed
// client API.
func TestClientAgainstRealCalloutd(t *testing.T) {
	realpeer.Require(t, "calloutd")
	w := newWorld(t, 25, 53)
	real := realpeer.StartCalloutd(t, realpeer.CalloutdOptions{Nameserver: w.net.IP(53), Ehlo: "probe.harness.test", MailFrom: "verify@harness.test"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := Dial(ctx, "tcp", real.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Greeting != Greeting {
		t.Errorf("greeting %q", cl.Greeting)
	}
	if err := cl.SID(ctx, "typed"); err != nil {
		t.Fatal(err)
	}
	if err := cl.SetTimeouts(ctx, smtpprobe.Timeouts{Connect: 2 * time.Second, Initial: 2 * time.Second,
		Helo: 2 * time.Second, Mail: 2 * time.Second, Rcpt: 1500 * time.Millisecond, Rset: time.Second, Quit: time.Second}); err != nil {
		t.Fatal(err)
	}
	vals, err := cl.Get(ctx, "ehlo", "mailfrom")
	if err != nil || vals["ehlo"] != "probe.harness.test" || vals["mailfrom"] != "verify@harness.test" {
		t.Errorf("GET: %v %v", vals, err)
	}
	want := map[string]Result{}
	for email, r := range map[string]Result{"good@mx1.test": Success, "bad@mx3.test": NotFound, "grey@example.com": TempFailure} {
		req := Request{Email: email}
		if !strings.HasSuffix(email, ".test") {
			req.Mode, req.Host = smtpprobe.HostOnly, w.net.IP(2)
		}
		id, err := cl.Vrfy(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = r
	}
	drop, err := cl.Vrfy(ctx, Request{Email: "drop-me@mx1.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Drop(ctx, drop); err != nil {
		t.Fatal(err)
	}
	var re *ReplyError
	if err := cl.Drop(ctx, drop); !errorsAs(err, &re) || re.Text != ErrNoEntry {
		t.Errorf("second DROP: %v", err)
	}
	if _, err := cl.Vrfy(ctx, Request{Email: "x@y", Mode: smtpprobe.MXOnly}); !errorsAs(err, &re) || re.Text != ErrModeNeedsHost {
		t.Errorf("VRFY without host: %v", err)
	}
	var prog []Progress
	res, err := cl.Run(ctx, func(p Progress) { prog = append(prog, p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(want) {
		t.Errorf("RUN answered %v, want %v", res, want)
	}
	for _, r := range res {
		if want[r.ID] != r.Result {
			t.Errorf("id %s: %v, want %v", r.ID, r.Result, want[r.ID])
		}
	}
	if len(prog) == 0 || prog[0].Stage != "INIT" {
		t.Errorf("progress: %+v", prog)
	}
	if err := cl.Quit(ctx); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

// withoutExtensions removes our extra progress lines (cached, nohost)
// from a transcript.
func withoutExtensions(tr string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(tr, "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[1] == "*" && (f[3] == StageCached || f[3] == StageNoHost) {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// diffLines shows the lines where two transcripts part.
func diffLines(want, got string) string {
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out strings.Builder
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			out.WriteString("calloutd: " + x + "\nours:     " + y + "\n")
		}
	}
	return out.String()
}
