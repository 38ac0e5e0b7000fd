// smtp_test.go: the SMTP front as built from [smtp], and what a reload
// of it needs.

package service

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/mailmux/mailmux/adapters/smtp"
	"github.com/mailmux/mailmux/adapters/smtp/relay"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/pmult"
)

func parseSmtpConfig(t *testing.T, s string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(s), "t")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSmtpFrontFromConfig(t *testing.T) {
	cfg := parseSmtpConfig(t, `
[smtp]
listen = ["edge=inet:127.0.0.1:10025"]
mode = "after"
next_hop = "inet:127.0.0.1:10026"
trusted = ["127.0.0.1"]
proxy_protocol = ["edge"]
max_message = 0
data_deadline = "1m"
bare_lf = "reject"
forbid_unauth_pipelining = false
quarantine = "reject"
`)
	srv, err := smtpFront(cfg, pmult.NewSwitch(&pmult.Engine{}), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if srv.Mode != smtp.AfterQueue || srv.BareLF != smtp.BareLFReject || !srv.AllowPipelining || srv.Quarantine != smtp.QuarantineReject ||
		!srv.Proxy["edge"] || len(srv.Trusted) != 1 || srv.MaxMessage != -1 || srv.DataDeadline != time.Minute ||
		srv.LoopMarker != config.DefaultSMTPLoopMarker || srv.NextHop == nil {
		t.Errorf("server %+v", srv)
	}
	none, err := smtpFront(parseSmtpConfig(t, ""), pmult.NewSwitch(&pmult.Engine{}), nil, slog.New(slog.DiscardHandler))
	if err != nil || none != nil {
		t.Errorf("no [smtp]: %v %v", none, err)
	}
}

func TestSmtpChanged(t *testing.T) {
	base := `[smtp]
listen = ["inet:127.0.0.1:10025"]
next_hop = "inet:127.0.0.1:10026"
`
	if smtpChanged(parseSmtpConfig(t, base), parseSmtpConfig(t, base)) {
		t.Error("same [smtp] reported changed")
	}
	if !smtpChanged(parseSmtpConfig(t, base), parseSmtpConfig(t, base+"max_recipients = 5\n")) {
		t.Error("changed [smtp] not reported")
	}
}

func TestSmtpRelayConfig(t *testing.T) {
	cfg := parseSmtpConfig(t, `
[smtp]
listen = ["inet:127.0.0.1:10025"]
next_hop = "inet:127.0.0.1:10026"
lmtp = true
helo_name = "filter.example"
next_hop_data_timeout = "2m"
`)
	rc := relayConfig(&cfg.Smtp)
	if rc.Address != cfg.Smtp.NextHopAddr.String() || !rc.LMTP || rc.HeloName != "filter.example" || !rc.XForward ||
		rc.DataTimeout != 2*time.Minute || rc.ConnectTimeout != config.DefaultSMTPConnectTimeout ||
		rc.CommandTimeout != config.DefaultSMTPCommandTimeout {
		t.Errorf("relay config %+v", rc)
	}
}

// [smtp]'s defaults (config, plain data) are the front's own
// (adapters/smtp): one set of numbers, held equal here, where both are
// imported.
func TestSmtpDefaultsAgree(t *testing.T) {
	for _, c := range []struct {
		key       string
		cfg, smtp any
	}{
		{"max_message", config.DefaultSMTPMaxMessage, smtp.DefaultMaxMessage},
		{"max_header", config.DefaultSMTPMaxHeader, smtp.DefaultMaxHeader},
		{"max_recipients", config.DefaultSMTPMaxRecipients, smtp.DefaultMaxRecipients},
		{"max_line", config.DefaultSMTPMaxLine, smtp.DefaultMaxLine},
		{"max_errors", config.DefaultSMTPMaxErrors, smtp.DefaultMaxErrors},
		{"timeout", config.DefaultSMTPTimeout, smtp.DefaultCommandTimeout},
		{"timeout (writes)", config.DefaultSMTPTimeout, smtp.DefaultWriteTimeout},
		{"data_timeout", config.DefaultSMTPDataTimeout, smtp.DefaultDataTimeout},
		{"data_deadline", config.DefaultSMTPDataDeadline, smtp.DefaultDataDeadline},
		{"quarantine_header", config.DefaultSMTPQuarantineHeader, smtp.DefaultQuarantineHeader},
		{"loop_marker", config.DefaultSMTPLoopMarker, smtp.DefaultLoopMarker},
		{"next_hop_cache_size", config.DefaultSMTPHopCacheSize, relay.DefaultCacheSize},
		{"next_hop_reuse_time", config.DefaultSMTPHopReuseTime, relay.DefaultReuseTime},
		{"next_hop_idle", config.DefaultSMTPHopIdle, relay.DefaultIdleTimeout},
	} {
		if fmt.Sprint(c.cfg) != fmt.Sprint(c.smtp) {
			t.Errorf("%s: config default %v, adapters/smtp default %v", c.key, c.cfg, c.smtp)
		}
	}
	// And a Server built from an empty [smtp] (listen and next_hop only)
	// has the front's defaults where it matters.
	srv, err := smtpFront(parseSmtpConfig(t, "[smtp]\nlisten = [\"inet:127.0.0.1:10025\"]\nnext_hop = \"inet:127.0.0.1:10026\"\n"),
		pmult.NewSwitch(&pmult.Engine{}), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if srv.MaxMessage != smtp.DefaultMaxMessage || srv.MaxLine != smtp.DefaultMaxLine || srv.CommandTimeout != smtp.DefaultCommandTimeout ||
		srv.AllowPipelining || srv.Mode != smtp.BeforeQueue {
		t.Errorf("defaults: %+v", srv)
	}
}

// TestSmtpFrontSharesBudget: with [smtp] the process has one memory
// budget of memory_budget bytes: the engine and the SMTP front draw on
// the same one (before, the front had a second one of the full size).
func TestSmtpFrontSharesBudget(t *testing.T) {
	cfg := parseSmtpConfig(t, "memory_budget = 4096\n[smtp]\nlisten = [\"inet:127.0.0.1:10025\"]\nnext_hop = \"inet:127.0.0.1:10026\"\n")
	budget := pmult.NewBudget(int64(cfg.MemoryBudget))
	eng, err := cfg.Engine(nil)
	if err != nil {
		t.Fatal(err)
	}
	eng.Budget = budget
	srv, err := smtpFront(cfg, pmult.NewSwitch(eng), budget, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if srv.Budget != budget || eng.Budget != budget {
		t.Fatalf("front budget %p, engine budget %p, process budget %p", srv.Budget, eng.Budget, budget)
	}
	if srv.MemoryBudget != 0 {
		t.Errorf("front has a budget of its own: MemoryBudget = %d", srv.MemoryBudget)
	}
	if budget.Limit() != 4096 {
		t.Errorf("budget limit %d, want memory_budget 4096", budget.Limit())
	}
}
