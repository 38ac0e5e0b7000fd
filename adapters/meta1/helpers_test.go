// helpers_test.go: an in-process fake backend that records the events it
// gets and answers by plan, and a server+simulator fixture on loopback.

package meta1_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	m1 "github.com/mailmux/mailmux/adapters/meta1"
	"github.com/mailmux/mailmux/bench"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
	"github.com/mailmux/mailmux/sim/meta1"
)

func TestMain(m *testing.M) {
	bench.MaybeServeNull() // the benchmark's null backends run in a child
	os.Exit(m.Run())
}

// newFake returns a backend that records the events it gets and answers
// each with answer(ev) (nil: continue), in sessions that may modify
// everything.
func newFake(name string, answer func(ev *pmult.Event) pmult.Reply) *pmulttest.Backend {
	f := pmulttest.New(name, pmult.Caps{Actions: pmult.ActModify})
	if answer != nil {
		f.Hook = func(ev *pmult.Event) (pmulttest.Step, bool) {
			r := answer(ev)
			return pmulttest.Step{Verdict: r.Verdict, Text: r.Text, Edits: r.Edits}, true
		}
	}
	return f
}

// fixture is a MeTA1 front on loopback with the given backends.
type fixture struct {
	srv  *m1.Server
	addr string
	t    testing.TB
}

func start(t testing.TB, mod func(*m1.Server), backends ...pmult.Backend) *fixture {
	t.Helper()
	eng := &pmult.Engine{}
	for _, b := range backends {
		eng.Slots = append(eng.Slots, pmult.Slot{Backend: b, Policy: pmult.Policy{OnFailure: pmult.FailTempfail}})
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if testing.Verbose() == false {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv := &m1.Server{Engine: eng, Log: log, Version: "test-1"}
	if mod != nil {
		mod(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return &fixture{srv: srv, addr: ln.Addr().String(), t: t}
}

func (fx *fixture) dial(cfg meta1sim.Config) *meta1sim.Client {
	fx.t.Helper()
	cfg.Network, cfg.Address = "tcp", fx.addr
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	c, err := meta1sim.Dial(context.Background(), cfg)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() { c.Close() })
	return c
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// macro returns the value of a macro in an event's sets.
func macro(ev pmult.Event, name string) (string, bool) {
	for _, m := range ev.Macros {
		for i := 0; i+1 < len(m.Pairs); i += 2 {
			if macros.Normalize(m.Pairs[i]) == name {
				return m.Pairs[i+1], true
			}
		}
	}
	return "", false
}
