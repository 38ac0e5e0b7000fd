// smtp_test.go: the [smtp] table: a complete one, the defaults, every
// error at once, an SMTP-only configuration.

package config

import (
	"strings"
	"testing"
	"time"
)

func TestSmtpTable(t *testing.T) {
	cfg, err := Parse([]byte(`
listen = []
[smtp]
listen = ["in=inet:127.0.0.1:10025", "unix:/run/pmult/smtp.sock"]
mode = "after"
next_hop = "inet:127.0.0.1:10026"
lmtp = true
trusted = ["127.0.0.1", "10.0.0.0/8"]
proxy_protocol = ["in"]
max_recipients = 50
data_deadline = "10m"
bare_lf = "reject"
forbid_unauth_pipelining = false
quarantine = "tempfail"
loop_marker = "X-Filtered-Here"
[macros.listener.in]
set = { "{x}" = "y" }
`), "s.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Smtp
	if len(s.ListenAddrs) != 2 || s.ListenNames[0] != "in" || s.NextHopAddr.Addr != "127.0.0.1:10026" || !s.LMTP || s.Mode != "after" {
		t.Errorf("listen/next hop: %+v", s)
	}
	if len(s.TrustedNets) != 2 || s.TrustedNets[0].String() != "127.0.0.1/32" || s.TrustedNets[1].String() != "10.0.0.0/8" {
		t.Errorf("trusted %v", s.TrustedNets)
	}
	if s.MaxRecipients != 50 || s.DataDeadline.Duration != 10*time.Minute || s.BareLF != "reject" || s.ForbidUnauthPipelining ||
		s.Quarantine != "tempfail" || s.LoopMarker != "X-Filtered-Here" || !s.XForward {
		t.Errorf("values %+v", s)
	}
	if s.MaxMessage != DefaultSMTPMaxMessage || s.MaxLine != 2048 || s.Timeout.Duration != 300*time.Second ||
		s.QuarantineHeader != DefaultSMTPQuarantineHeader || s.NextHopDataTimeout.Duration != 10*time.Minute {
		t.Errorf("defaults %+v", s)
	}
}

func TestSmtpTableAbsentAndErrors(t *testing.T) {
	cfg, err := Parse(nil, "d")
	if err != nil || len(cfg.Smtp.ListenAddrs) != 0 {
		t.Fatalf("absent table: %v %+v", err, cfg.Smtp)
	}
	_, err = Parse([]byte(`
[smtp]
listen = ["inet:127.0.0.1:7357", "bogus::"]
mode = "sideways"
trusted = ["300.1.1.1"]
proxy_protocol = ["nosuch"]
max_line = 10
loop_marker = "bad marker"
quarantin = "header"
`), "e.toml")
	msgs := []string{}
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"smtp.listen[0]: address", "smtp.listen[1]", "smtp.mode", "smtp.trusted[0]",
		"smtp.proxy_protocol[0]", "smtp.max_line", "smtp.loop_marker", `unknown key "smtp.quarantin"`, "smtp.next_hop: missing"} {
		if !strings.Contains(all, want) {
			t.Errorf("no error %q in\n%s", want, all)
		}
	}
}
