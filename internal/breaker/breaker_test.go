// breaker_test.go: the breaker on its own (backends/milter tests it with
// real sockets: breaker_test.go, breaker_load_test.go,
// breaker_burst_test.go).

package breaker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/pmult"
)

var errConnect = errors.New("connect: connection refused")

func admit(t *testing.T, b *Breaker) *Attempt {
	t.Helper()
	a, err := b.Admit(context.Background(), time.Now().Add(time.Minute), "tcp:x")
	if err != nil {
		t.Fatalf("admit: %v", err)
	}
	return a
}

func wantDown(t *testing.T, b *Breaker, what string) {
	t.Helper()
	_, err := b.Admit(context.Background(), time.Now().Add(time.Minute), "tcp:x")
	if !errors.Is(err, pmult.ErrDown) || !strings.HasPrefix(err.Error(), "tcp:x: ") {
		t.Fatalf("%s: admit = %v, want ErrDown", what, err)
	}
}

// A failure trips the breaker for MinDown; after it one probe goes
// through at a time; only a failed probe doubles the period; a success
// ends it.
func TestProbeOnlyDoubling(t *testing.T) {
	b := &Breaker{Name: "x"}
	admit(t, b).Record(errConnect)
	if st := b.State(); st.DownFor != MinDown || st.Pending != 0 {
		t.Fatalf("after a failure: %+v", st)
	}
	wantDown(t, b, "while down")
	b.Expire()
	p := admit(t, b)
	if !b.State().Probing {
		t.Fatal("the open after the down period is not a probe")
	}
	wantDown(t, b, "while probing")
	p.Record(errConnect)
	if st := b.State(); st.DownFor != 2*MinDown || st.Probing {
		t.Fatalf("after a failed probe: %+v, want down for %s", st, 2*MinDown)
	}
	for range 10 {
		b.Expire()
		admit(t, b).Record(errConnect)
	}
	if d := b.State().DownFor; d != MaxDown {
		t.Fatalf("after many failed probes: down for %s, want %s", d, MaxDown)
	}
	b.Expire()
	admit(t, b).Record(nil)
	if st := b.State(); st.DownFor != 0 || st.Probing || st.Pending != 0 {
		t.Fatalf("after a successful probe: %+v, want up", st)
	}
	admit(t, b).Record(nil)
}

// Opens in flight when the breaker trips are the same outage: their
// failures do not double the period.
func TestInFlightFailuresOneOutage(t *testing.T) {
	b := &Breaker{}
	admit(t, b).Record(nil) // recently up: every open is admitted at once
	var as []*Attempt
	for range 5 {
		as = append(as, admit(t, b))
	}
	if n := b.State().Pending; n != 5 {
		t.Fatalf("%d pending, want 5", n)
	}
	time.Sleep(time.Millisecond) // they fail after the last success
	for _, a := range as {
		a.Record(errConnect)
	}
	if st := b.State(); st.DownFor != MinDown || st.Pending != 0 {
		t.Fatalf("after 5 in-flight failures: %+v, want down for %s", st, MinDown)
	}
}

// An abandoned probe (its MTA session went away) is neutral: the down
// period is kept, and the next open probes at once.
func TestAbandonNeutral(t *testing.T) {
	b := &Breaker{}
	admit(t, b).Record(errConnect)
	b.Expire()
	admit(t, b).Abandon()
	if st := b.State(); st.DownFor != MinDown || st.Probing || st.Pending != 0 {
		t.Fatalf("after an abandoned probe: %+v, want down for %s, not probing", st, MinDown)
	}
	p := admit(t, b) // probes at once: the period is over
	p.Record(errConnect)
	if d := b.State().DownFor; d != 2*MinDown {
		t.Fatalf("after the next probe failed: down for %s", d)
	}
}

// A cold backend (no recent success) with an open pending makes the next
// open wait for it, within that open's budget; one pending for OpenStall
// makes further opens fail fast.
func TestOpenStall(t *testing.T) {
	b := &Breaker{}
	first := admit(t, b)
	_, err := b.Admit(context.Background(), time.Now().Add(5*time.Millisecond), "tcp:x")
	if !errors.Is(err, pmult.ErrDown) || !strings.Contains(err.Error(), "budget spent waiting") {
		t.Fatalf("second open with a short budget: %v", err)
	}
	// The first open succeeds: a waiting open is admitted at once.
	done := make(chan error, 1)
	go func() {
		a, err := b.Admit(context.Background(), time.Now().Add(time.Minute), "tcp:x")
		if err == nil {
			a.Record(nil)
		}
		done <- err
	}()
	for b.State().Pending != 1 {
		time.Sleep(time.Millisecond)
	}
	first.Record(nil)
	if err := <-done; err != nil {
		t.Fatalf("open waiting for the first: %v", err)
	}
	// No success since a pending open started, OpenStall ago: fail fast.
	cold := &Breaker{}
	stuck := admit(t, cold)
	time.Sleep(OpenStall)
	wantDown(t, cold, "an open pending for OpenStall")
	stuck.Abandon()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	wait := admit(t, cold)
	if _, err := cold.Admit(ctx, time.Now().Add(time.Minute), "tcp:x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting open with its ctx cancelled: %v", err)
	}
	wait.Record(nil)
}
