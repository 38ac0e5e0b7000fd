package milter

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	"github.com/mailmux/mailmux/macros"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// A macro an earlier backend set (pmult.Reply.Macros) reaches a milter
// after it in the macro packet before the command, as the MTA's would:
// to a filter that asked for it at the stage (through its own [macros]
// table), and to a filter that asked for nothing there; not at the stage
// it was set at (the envelope runs in parallel), and not to a filter
// before the setter.
func TestAssignedMacrosReachMilters(t *testing.T) {
	type packets struct {
		mu  sync.Mutex
		got map[byte][][]string
	}
	start := func(t *testing.T, lists []mp.SymList) (string, *packets) {
		p := &packets{got: map[byte][][]string{}}
		m := &testmilter.Server{
			Actions:  mp.ActSetSymList,
			SymLists: lists,
			Handler: func(c *testmilter.Conn, pk mp.Packet) []mp.Packet {
				if pk.Code == mp.CmdMacro {
					if mc, err := mp.ParseMacro(pk.Data); err == nil {
						p.mu.Lock()
						p.got[mc.Cmd] = append(p.got[mc.Cmd], mc.Pairs)
						p.mu.Unlock()
					}
				}
				return nil
			},
		}
		a, err := m.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Stop)
		return a.String(), p
	}
	value := func(p *packets, cmd byte, name string) string {
		p.mu.Lock()
		defer p.mu.Unlock()
		out := "-"
		for _, pairs := range p.got[cmd] {
			if v, ok := macros.Lookup(pairs, name); ok {
				out = v
			}
		}
		return out
	}
	firstAddr, first := start(t, nil)
	askAddr, ask := start(t, []mp.SymList{{Stage: mp.StageEnvFrom, Macros: "{rep}"}, {Stage: mp.StageEnvRcpt, Macros: "{rep} {nobody}"}})
	allAddr, all := start(t, nil)
	own, err := macros.ParseTable(map[string]any{"rename": map[string]any{"{x_reputation}": "{rep}"}})
	if err != nil {
		t.Fatal(err)
	}
	setter := setterBackend{pmult.Func("setter", pmult.Caps{}, func(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
		if ev.Kind == pmult.KindMail {
			return pmult.Reply{Macros: []pmult.Assignment{{Name: "{x_reputation}", Value: "bad 192.0.2.1"}}}, nil
		}
		return pmult.Reply{}, nil
	}), []string{"{x_reputation}"}}
	var logs safeBuf
	e := &pmult.Engine{Slots: []pmult.Slot{
		{Backend: New(Config{Name: "first", Network: "tcp", Address: firstAddr})},
		{Backend: setter},
		{Backend: New(Config{Name: "ask", Network: "tcp", Address: askAddr, Macros: own,
			Log: slog.New(slog.NewTextHandler(&logs, nil))})},
		{Backend: New(Config{Name: "all", Network: "tcp", Address: allAddr})},
	}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Do(&pmult.Event{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Address: "192.0.2.1",
		Macros: []pmult.MacroSet{{For: pmult.KindConnect, Pairs: []string{"j", "mx"}}}})
	h.Do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@b>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "Q1"}}}})
	h.Do(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<c@d>"},
		Macros: []pmult.MacroSet{{For: pmult.KindRcpt, Pairs: []string{"{rcpt_addr}", "c@d"}}}})
	h.Data()
	h.EOM() // synchronises: every packet before it was read
	for _, c := range []struct {
		p    *packets
		who  string
		cmd  byte
		name string
		want string
	}{
		{ask, "ask", mp.CmdMail, "{rep}", "-"},
		{ask, "ask", mp.CmdRcpt, "{rep}", "bad 192.0.2.1"},
		{ask, "ask", mp.CmdRcpt, "{x_reputation}", "-"}, // renamed by its table
		{all, "all", mp.CmdMail, "{x_reputation}", "-"},
		{all, "all", mp.CmdRcpt, "{x_reputation}", "bad 192.0.2.1"},
		{all, "all", mp.CmdRcpt, "{rcpt_addr}", "c@d"},
		{all, "all", mp.CmdEOB, "{x_reputation}", "bad 192.0.2.1"},
		{first, "first", mp.CmdRcpt, "{x_reputation}", "-"},
		{first, "first", mp.CmdEOB, "{x_reputation}", "-"},
	} {
		if got := value(c.p, c.cmd, c.name); got != c.want {
			t.Errorf("%s: %s at %c = %q, want %q", c.who, c.name, c.cmd, got, c.want)
		}
	}
	// {nobody} is starved (one warning); {rep} ({x_reputation} through
	// the table) may come from the setter (MacroSetter): no warning,
	// though it was not there at MAIL.
	if l := logs.String(); !strings.Contains(l, "macro={nobody}") || strings.Contains(l, "macro={rep}") {
		t.Errorf("starved warnings:\n%s", l)
	}
}

// setterBackend is a Func backend with a MacroSetter.
type setterBackend struct {
	pmult.Backend
	names []string
}

func (s setterBackend) SetsMacros() []string { return s.names }
