package smtp

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/internal/connserve"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// The [macros] tables apply to the SMTP front as to the milter front:
// dialect milter (j copied to {if_name}), then the global and the
// listener's table (its name from a named listener).
func TestMacroTablesApply(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[milter]
listen = []
[smtp]
listen = ["edge=inet:127.0.0.1:10025"]
next_hop = "inet:127.0.0.1:10026"
[macros]
set = { "connect:{site}" = "here" }
[macros.listener.edge]
set = { "connect:{zone}" = "dmz" }
`), "m.toml")
	if err != nil {
		t.Fatal(err)
	}
	b := pmulttest.New("b", pmult.Caps{})
	f := &front{hop: &fakeHop{}, log: &pmulttest.LogBuffer{}}
	f.srv = &Server{Engine: &pmult.Engine{Slots: []pmult.Slot{{Backend: b}}, Macros: cfg.Macros.Tables("v1")},
		Log: pmulttest.NewLog(f.log), NextHop: f.hop, Hostname: "mx.test"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.srv.Serve(connserve.Named(ln, "edge"))
	defer f.srv.Shutdown(context.Background())
	r := dialRaw(t, ln.Addr().String())
	r.reply()
	session(t, r, "EHLO c.example", "MAIL FROM:<a@example.org>")
	r.nc.Close()
	var pairs []string
	for _, m := range b.Events()[0].Macros {
		pairs = append(pairs, m.Pairs...)
	}
	got := strings.Join(pairs, " ")
	for _, want := range []string{"j mx.test", "{daemon_name} edge", "{if_name} mx.test", "{site} here", "{zone} dmz"} {
		if !strings.Contains(got, want) {
			t.Errorf("connect macros %q lack %q", got, want)
		}
	}
}

// A reload stores a new engine in the Switch: new SMTP sessions use it,
// as on the other fronts.
func TestReloadSwitchesEngine(t *testing.T) {
	old, nw := pmulttest.New("old", pmult.Caps{}), pmulttest.New("new", pmult.Caps{})
	sw := pmult.NewSwitch(&pmult.Engine{Slots: []pmult.Slot{{Backend: old}}})
	f := startFront(t, func(s *Server) { s.Engines = sw }, nil...)
	if err := f.send(t, "a@example.org", []string{"x@example.com"}, "Subject: 1\r\n\r\n1\r\n"); err != nil {
		t.Fatal(err)
	}
	sw.Store(&pmult.Engine{Slots: []pmult.Slot{{Backend: nw}}})
	if err := f.send(t, "a@example.org", []string{"x@example.com"}, "Subject: 2\r\n\r\n2\r\n"); err != nil {
		t.Fatal(err)
	}
	if old.Opens() != 1 || nw.Opens() != 1 {
		t.Errorf("opens: old %d, new %d", old.Opens(), nw.Opens())
	}
}
