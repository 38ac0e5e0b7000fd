package pmult_test

import (
	"context"
	"strings"
	"testing"

	. "github.com/mailmux/mailmux/pmult"
)

// metricsText is m in the exposition format.
func metricsText(t *testing.T, m *Metrics) string {
	t.Helper()
	var b strings.Builder
	if err := m.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A Switch gives new sessions the engine stored last, leaves open sessions
// on theirs, and retires the engine it replaces (once). Engines sharing
// one Metrics keep counting across the switch: by backend name, and the
// active gauge counts the sessions still open on the retired engine.
func TestSwitchReload(t *testing.T) {
	m := NewMetrics()
	a1 := &retirer{fakeBackend: newFake("a", reader)}
	e1 := &Engine{Counters: m, Slots: []Slot{{Backend: a1}}}
	sw := NewSwitch(e1)
	ctx := context.Background()

	s1 := sw.NewSession("1", nil)
	s1.Open(ctx, allOffer, nil)
	s1.Handle(ctx, &Event{Kind: KindConnect, Hostname: "c", Family: '4', Port: 25, Address: "192.0.2.1"})

	a2 := &retirer{fakeBackend: newFake("a", reader)}
	e2 := &Engine{Counters: m, Slots: []Slot{{Backend: a2}, {Backend: newFake("b", reader)}}}
	sw.Store(e2)
	if sw.Engine() != e2 || a1.n != 1 || a2.n != 0 {
		t.Fatalf("after Store: engine %p (want %p), retired old %d new %d times", sw.Engine(), e2, a1.n, a2.n)
	}
	s2 := sw.NewSession("2", nil)
	if s2.Engine() != e2 || s1.Engine() != e1 {
		t.Errorf("session engines: new %p open %p", s2.Engine(), s1.Engine())
	}
	s2.Open(ctx, allOffer, nil)
	s2.Handle(ctx, &Event{Kind: KindConnect, Hostname: "c", Family: '4', Port: 25, Address: "192.0.2.1"})

	got := metricsText(t, m)
	for _, want := range []string{
		"pmult_sessions_total 2\n",
		"pmult_sessions_active 2\n", // s1 still open on the retired engine
		`pmult_backend_replies_total{backend="a",stage="connect",verdict="continue"} 2` + "\n",
		`pmult_backend_replies_total{backend="b",stage="connect",verdict="continue"} 1` + "\n",
		`pmult_replies_total{stage="connect",verdict="continue"} 2` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q:\n%s", want, got)
		}
	}
	s1.Close()
	s2.Close()
	if got := metricsText(t, m); !strings.Contains(got, "pmult_sessions_active 0\n") {
		t.Errorf("after Close:\n%s", got)
	}
	sw.Retire()
	if a2.n != 1 || a1.n != 1 {
		t.Errorf("Retire at stop: new %d, old %d times", a2.n, a1.n)
	}
	sw.Store(e2) // the same engine again: not retired
	if a2.n != 1 {
		t.Errorf("Store of the current engine retired it")
	}
}

// An engine without Counters counts in its own, slot by slot.
func TestEngineOwnMetrics(t *testing.T) {
	e := &Engine{Slots: slots(newFake("x", reader), newFake("y", reader))}
	h := open(t, e, allOffer)
	h.Do(&Event{Kind: KindConnect, Hostname: "c", Family: '4', Port: 25, Address: "192.0.2.1"})
	if n := MetricsBackends(e.Metrics()); n != 2 {
		t.Errorf("own metrics: %d backends, want 2", n)
	}
	if got := metricsText(t, e.Metrics()); !strings.Contains(got, `pmult_backend_skipped_total{backend="y"} 0`) {
		t.Errorf("metrics:\n%s", got)
	}
}
