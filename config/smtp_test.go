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

// Listener names are unique across the fronts (the engine, its metrics
// and conditions tell listeners apart by name only): a name given twice,
// in one front or in two, is an error naming both places; each front's
// names alone still load.
func TestListenerNamesAcrossFronts(t *testing.T) {
	_, err := Parse([]byte(`listen = ["edge=inet:127.0.0.1:7357", "inet:127.0.0.1:7358"]
[meta1]
listen = ["edge=inet:127.0.0.1:3333", "m=inet:127.0.0.1:3334"]
[smtp]
listen = ["m=inet:127.0.0.1:10025", "s=inet:127.0.0.1:10027", "s=inet:127.0.0.1:10028"]
next_hop = "inet:127.0.0.1:10026"
`), "names.toml")
	if err == nil {
		t.Fatal("no error")
	}
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`names.toml: meta1.listen[0]: listener name "edge": same as listen[0]`,
		`names.toml: smtp.listen[0]: listener name "m": same as meta1.listen[1]`,
		`names.toml: smtp.listen[2]: listener name "s": same as smtp.listen[1]`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in\n%s", want, all)
		}
	}
	if len(msgs) != 3 {
		t.Errorf("%d errors, want 3:\n%s", len(msgs), all)
	}
	if _, err := Parse([]byte(`listen = ["edge=inet:127.0.0.1:7357"]
[meta1]
listen = ["m=inet:127.0.0.1:3333"]
[smtp]
listen = ["s=inet:127.0.0.1:10025", "inet:127.0.0.1:10027"]
next_hop = "inet:127.0.0.1:10026"
`), "ok.toml"); err != nil {
		t.Errorf("distinct names: %v", err)
	}
}
