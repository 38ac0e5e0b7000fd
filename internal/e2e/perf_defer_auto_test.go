// perf_defer_auto_test.go: defer_content = "auto" (the default). The
// OPTNEG offers of the MTAs pmult meets (Postfix 3.7, Sendmail 8.17,
// mailfromd's mtasim 8.15, our mtasim, emersion/go-milter's client) are
// captured and classified by the same rule the milter front applies:
// only mailfromd's mtasim waits for the replies it offers not to wait for.
// mtasim then runs against pmult with no defer_content key at all.

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	adapter "github.com/mailmux/mailmux/adapters/milter"
	"github.com/mailmux/mailmux/internal/realpeer"
	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	mtasim "github.com/mailmux/mailmux/sim/mta"
)

// offerTap is a test milter that records every OPTNEG offered to it.
type offerTap struct {
	srv  testmilter.Server
	spec string // libmilter spec, inet:PORT@127.0.0.1
	addr string // host:port
	got  chan mp.OptNeg
}

func startOfferTap(t *testing.T) *offerTap {
	t.Helper()
	tap := &offerTap{got: make(chan mp.OptNeg, 16)}
	tap.srv.Handler = func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdOptNeg {
			if o, err := mp.ParseOptNeg(p.Data); err == nil {
				select {
				case tap.got <- o:
				default:
				}
			}
		}
		return nil
	}
	a, err := tap.srv.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tap.srv.Stop)
	tap.addr = a.String()
	_, port, _ := strings.Cut(tap.addr, ":")
	tap.spec = "inet:" + port + "@127.0.0.1"
	return tap
}

func (tap *offerTap) first(t *testing.T, who string) mp.OptNeg {
	t.Helper()
	select {
	case o := <-tap.got:
		return o
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no OPTNEG within 30 s", who)
		return mp.OptNeg{}
	}
}

func TestPerfMTAOffersClassified(t *testing.T) {
	t.Parallel()
	type peer struct {
		name  string
		needs []string
		run   func(t *testing.T, tap *offerTap)
		waits bool // known to wait for the content replies it offers NR for
	}
	peers := []peer{
		{"postfix 3.7", []string{"postfix", "swaks"}, func(t *testing.T, tap *offerTap) {
			pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: "inet:" + tap.addr, DefaultAction: "accept"})
			if out, err := pf.Send(t, "--from", "a@example.org", "--to", "b@example.com"); err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
		}, false},
		{"sendmail 8.17", []string{"sendmail", "swaks"}, func(t *testing.T, tap *offerTap) {
			sm := realpeer.StartSendmail(t, realpeer.SendmailOptions{Milter: tap.spec})
			if out, err := sm.Send(t, "--from", "a@example.org", "--to", "b@example.com"); err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
		}, false},
		{"mailfromd mtasim 8.15", []string{"mtasim"}, func(t *testing.T, tap *offerTap) {
			realpeer.RunMtasim(t, tap.spec, "\\S inet client.example.net 192.0.2.7 4567\nehlo x\nquit\n")
		}, true},
		{"our mtasim", nil, func(t *testing.T, tap *offerTap) {
			p, err := mtasim.ParsePort(tap.spec)
			if err != nil {
				t.Fatal(err)
			}
			cfg := &mtasim.Config{Backend: p.Backend(6), FilterName: tap.spec}
			var out strings.Builder
			if err := mtasim.RunScript(context.Background(), cfg, mtasim.NewLineReader(strings.NewReader("ehlo x\nquit\n")),
				&out, mtasim.ScriptOptions{}); err != nil {
				t.Logf("our mtasim: %v\n%s", err, out.String())
			}
		}, false},
		{"go-milter client", nil, func(t *testing.T, tap *offerTap) {
			c := gomilter.NewDefaultClient("tcp", tap.addr)
			s, err := c.Session()
			if err != nil {
				t.Fatalf("go-milter session: %v", err)
			}
			s.Close()
		}, false},
	}
	for _, pr := range peers {
		t.Run(pr.name, func(t *testing.T) {
			if len(pr.needs) > 0 {
				realpeer.Require(t, pr.needs...)
			}
			tap := startOfferTap(t)
			pr.run(t, tap)
			o := tap.first(t, pr.name)
			waits := adapter.WaitsForContentReplies(o.Version, o.Actions, o.Protocol)
			t.Logf("%s offers version %d, actions 0x%x, protocol 0x%x: waits for content replies %v",
				pr.name, o.Version, uint32(o.Actions), uint32(o.Protocol), waits)
			if waits != pr.waits {
				t.Errorf("%s (version %d, actions 0x%x, protocol 0x%x): classified waits=%v, want %v",
					pr.name, o.Version, uint32(o.Actions), uint32(o.Protocol), waits, pr.waits)
			}
		})
	}
}

// TestPerfMtasimDefaultConfig: mailfromd's mtasim against pmult with no
// defer_content key (auto) and a backend that answers every header, EOH
// and body chunk: mtasim must finish (it hung when pmult granted it
// NR_HDR, NR_EOH, NR_BODY: it waits for those replies anyway), see the
// message rejected at the header (pmult's decision line: mtasim 8.15
// prints no reply to the final dot of a rejected message), and pmult must
// log why it kept mtasim waiting.
func TestPerfMtasimDefaultConfig(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "mtasim", "pymilter")
	specP, logP := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"header": {Action: "reject", Match: "X-Trigger: yes", Reply: &realpeer.PyReply{
				Code: "550", XCode: "5.7.1", Lines: []string{"header refused"}}},
		},
	})
	spec, p := startPmult(t, "", backend{"py", specP, ""})
	logPmultOnFailure(t, p)
	script := func(trigger string) string {
		return fmt.Sprintf(`\S inet client.example.net 192.0.2.7 4567
\E250
ehlo client.example.net
\E250
mail from:<a@example.org>
\E250
rcpt to:<good@example.com>
\E354
data
Subject: through pmult
X-Trigger: %s

hello from mtasim
.
\E221
quit
`, trigger)
	}
	stdout, stderr, code := realpeer.RunMtasim(t, spec, script("no"))
	if code != realpeer.MtasimOK {
		t.Fatalf("mtasim exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, realpeer.MtasimOK, stdout, stderr)
	}
	if !strings.Contains(stdout, "250 Mail accepted") {
		t.Errorf("mtasim: message not accepted:\n%s", stdout)
	}
	stdout, stderr, code = realpeer.RunMtasim(t, spec, script("yes"))
	if code != realpeer.MtasimOK {
		t.Fatalf("mtasim (trigger) exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, realpeer.MtasimOK, stdout, stderr)
	}
	pyErrors(t, logP)
	log := settledLog(p)
	if !strings.Contains(log, `reply=reject at=header by=py text="550 5.7.1 header refused"`) {
		t.Errorf("pmult did not reject the message at the header (mtasim 8.15 prints no reply to the final dot)")
	}
	if !strings.Contains(log, "known to wait for these replies") {
		t.Errorf("pmult did not log why it kept mtasim waiting")
	}
	if !p.Running() {
		t.Errorf("pmult exited: %v", p.ExitErr())
	}
}

// TestPerfPostfixGetsContentNR: with the default configuration and a
// backend that answers headers, EOH and body chunks, pmult still lets
// Postfix off those replies: it grants NR_HDR, NR_EOH and NR_BODY.
func TestPerfPostfixGetsContentNR(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specP, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{})
	spec, p := startPmult(t, "", backend{"py", specP, ""})
	logPmultOnFailure(t, p)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	if out, err := pf.Send(t, "--from", "a@example.org", "--to", "b@example.com"); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	pf.WaitDelivered(t, 1, 30*time.Second)
	logHas(p, "msg=negotiated")
	var granted string
	for _, line := range strings.Split(p.Output(), "\n") {
		if strings.Contains(line, "msg=negotiated") {
			if _, after, ok := strings.Cut(line, " protocol="); ok {
				granted, _, _ = strings.Cut(after, " ")
			}
		}
	}
	var prot uint32
	if _, err := fmt.Sscanf(granted, "0x%x", &prot); err != nil {
		t.Fatalf("no negotiated protocol in pmult's log (%q): %v", granted, err)
	}
	content := uint32(mp.ProtoNRHeader | mp.ProtoNREOH | mp.ProtoNRBody)
	if prot&content != content {
		t.Errorf("pmult granted Postfix protocol 0x%x: content NR bits 0x%x, want 0x%x", prot, prot&content, content)
	}
	if logHas(p, `deferred_to_eom=true why="defer_content = auto"`) == "" {
		t.Errorf("pmult did not log that it defers Postfix's content replies")
	}
}
