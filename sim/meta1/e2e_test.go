// e2e_test.go: the whole chain on loopback: this simulator (smtps) → pmult's
// MeTA1 front (in process, wired by package config as cmd/pmult wires it)
// → real backends: mailfromd running an MFL script and a pymilter milter.
// Everything on the pmilter side is the project's provisional model.

package meta1sim_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	m1 "github.com/mailmux/mailmux/adapters/meta1"
	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/internal/realpeer"
	"github.com/mailmux/mailmux/sim/meta1"
)

// mfl rejects one recipient and, at end of message, adds a header made of
// the macros pmult synthesises (and taid, requested from MeTA1).
const mfl = `prog envrcpt
do
  if $1 = "<nobody@example.com>"
    reject 550 5.1.1 "no such user here"
  fi
done

prog eom
do
  header_add("X-Mult", "${multiplexer} ${client_addr} ${client_port} $i ${taid} $f $s")
done
`

// startPmult runs the MeTA1 front with the backends of a TOML fragment.
func startPmult(t *testing.T, toml string) string {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "e2e.toml")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	eng, err := cfg.Engine(log)
	if err != nil {
		t.Fatal(err)
	}
	srv := &m1.Server{Engine: eng, Log: log, Macros: cfg.Meta1.Macros, Version: "e2e"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		eng.Retire()
	})
	return ln.Addr().String()
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

const e2eMsg = "From: a@example.org\r\nTo: b@example.com\r\nSubject: first\r\n line\r\n\r\nHello.\nBare LF line.\r\n"

func TestChainMailfromdPymilter(t *testing.T) {
	realpeer.Require(t, "mailfromd", "pymilter")
	specM := realpeer.StartMailfromd(t, mfl)
	specP, pylog := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"rcpt": {Action: "reject", Match: "pyreject", Reply: &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"py says no"}}},
		},
		EOMActions: []realpeer.PyAction{
			{Op: "addheader", Name: "X-Py", Value: "yes"},
			{Op: "chgheader", Name: "Subject", Index: 1, Value: "changed"},
			{Op: "addrcpt", Addr: "<added@example.com>"},
			{Op: "delrcpt", Addr: "<c@example.com>"},
			{Op: "replacebody", Body: "Replaced body.\r\n"},
		},
	})
	addr := startPmult(t, fmt.Sprintf(`listen = []
[meta1]
listen = "inet://127.0.0.1:1"
[meta1.define_macros]
mail = ["taid"]
[[backend]]
name = "mfd"
url = %q
[[backend]]
name = "py"
url = %q
`, specM, specP))
	ctx := context.Background()
	c, err := meta1sim.Dial(ctx, meta1sim.Config{Network: "tcp", Address: addr, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Two SMTP sessions at once on the one connection.
	type result struct {
		tr  meta1sim.Transaction
		rej []string
		err error
		id  string
	}
	run := func(n int) result {
		var res result
		s, err := c.NewSession(ctx)
		if err != nil {
			return result{err: err}
		}
		defer s.Close()
		res.id = s.ID()
		s.Macros["taid"] = fmt.Sprintf("TA%d", n)
		fail := func(r meta1sim.Reply, err error) bool {
			if err == nil && r.Objects() {
				err = fmt.Errorf("unexpected %+v", r)
			}
			res.err = err
			return err != nil
		}
		if fail(s.Connect(ctx, netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", n)), 40000+n, "client.example.org")) ||
			fail(s.Ehlo(ctx, fmt.Sprintf("helo%d.example.org", n))) || fail(s.Mail(ctx, "<a@example.org>")) {
			return res
		}
		for i, rc := range []string{"<b@example.com>", "<nobody@example.com>", "<pyreject@example.com>", "<c@example.com>"} {
			r, err := s.Rcpt(ctx, i, rc)
			if err != nil {
				res.err = err
				return res
			}
			if r.Objects() {
				res.rej = append(res.rej, r.SMTP(""))
			} else {
				res.tr.Rcpts = append(res.tr.Rcpts, rc)
			}
		}
		if fail(s.Data(ctx)) {
			return res
		}
		res.tr.Message = []byte(e2eMsg)
		r, err := s.Message(ctx, []byte(e2eMsg), 16)
		if fail(r, err) {
			return res
		}
		res.err = res.tr.Apply(r)
		return res
	}
	results := make(chan result, 2)
	for n := 1; n <= 2; n++ {
		go func() { results <- run(n) }()
	}
	for i := 0; i < 2; i++ {
		res := <-results
		if res.err != nil {
			t.Fatalf("session %s: %v", res.id, res.err)
		}
		if got := strings.Join(res.rej, " | "); got != "550 5.1.1 no such user here | 550 5.7.1 py says no" {
			t.Errorf("rejections: %q", got)
		}
		if got := strings.Join(res.tr.Rcpts, " "); got != "<b@example.com> <added@example.com>" {
			t.Errorf("recipients: %s", got)
		}
		msg := string(res.tr.Message)
		if !strings.HasPrefix(msg, "From: a@example.org\r\nTo: b@example.com\r\nSubject: changed\r\n") ||
			!strings.Contains(msg, "\r\nX-Py: yes\r\n") || !strings.HasSuffix(msg, "\r\n\r\nReplaced body.\r\n") {
			t.Errorf("message:\n%s", msg)
		}
		var xm string
		for _, l := range strings.Split(msg, "\r\n") {
			if v, ok := strings.CutPrefix(l, "X-Mult: "); ok {
				xm = v
			}
		}
		f := strings.Fields(xm)
		if len(f) != 7 || f[0] != "pmult" || !strings.HasPrefix(f[1], "192.0.2.") || f[3] != res.id ||
			f[4] != "TA"+f[1][len("192.0.2."):] || f[5] != "a@example.org" || f[6] != "helo"+f[1][len("192.0.2."):]+".example.org" {
			t.Errorf("X-Mult: %q (session %s)", xm, res.id)
		}
	}
	// pymilter saw the data stage of both sessions as separate headers (the folded one
	// whole) and the body with CRLF line ends.
	evs, err := realpeer.ParsePyEvents(pylog())
	if err != nil {
		t.Fatal(err)
	}
	var heads, body []string
	for _, e := range evs {
		switch e.Stage {
		case "header":
			heads = append(heads, strings.Join(e.Args, ": "))
		case "body":
			body = append(body, e.Args...)
		}
	}
	// (pymilter, the second editor, gets the content by replay: it sees
	// mailfromd's X-Mult too.)
	subjects := 0
	for _, h := range heads {
		if h == "Subject: first\n line" {
			subjects++
		}
	}
	if len(heads) != 8 || subjects != 2 {
		t.Errorf("pymilter headers: %q", heads)
	}
	if b := strings.Join(body, ""); strings.Count(b, "\r\n") != 4 || strings.Count(b, "\n") != 4 || len(b) != 2*len("Hello.\r\nBare LF line.\r\n") {
		t.Errorf("pymilter body: %q", b)
	}
}

func TestChainTimeoutFlags(t *testing.T) {
	realpeer.Require(t, "pymilter")
	specP, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{"rcpt": {Match: "slow", DelayMS: 1500}},
	})
	addr := startPmult(t, fmt.Sprintf("listen = []\n[meta1]\nlisten = \"inet://127.0.0.1:1\"\n[[backend]]\nname = \"py\"\nurl = %q\n", specP))
	ctx := context.Background()
	for _, tc := range []struct {
		flags      meta1sim.Flags
		code       uint32
		reconnects int64
	}{{meta1sim.FlagAbort, pmilter.ReplySSD, 0}, {meta1sim.FlagAcceptButReconnect, pmilter.ReplyContinue, 1}} {
		c, err := meta1sim.Dial(ctx, meta1sim.Config{Network: "tcp", Address: addr, Timeout: 400 * time.Millisecond, Flags: tc.flags})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := c.NewSession(ctx)
		s.Connect(ctx, netip.MustParseAddr("192.0.2.1"), 1, "h")
		s.Mail(ctx, "<a@x>")
		r, err := s.Rcpt(ctx, 0, "<slow@x>")
		if err != nil || !r.TimedOut || r.Code != tc.code {
			t.Errorf("flags %d: rcpt %+v %v", tc.flags, r, err)
		}
		s.Close()
		s2, _ := c.NewSession(ctx)
		r, err = s2.Connect(ctx, netip.MustParseAddr("192.0.2.2"), 1, "h")
		if err != nil || r.Code != pmilter.ReplyContinue || c.Reconnects.Load() != tc.reconnects {
			t.Errorf("flags %d: next session %+v %v, reconnects %d", tc.flags, r, err, c.Reconnects.Load())
		}
		s2.Close()
		c.Close()
	}
}
