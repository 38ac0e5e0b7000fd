// spool_test.go: the message kept for serial replay (spool.go).

package pmult_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/mailmux/mailmux/pmult"
)

// openSpoolFiles counts this process's open files in dir (spool files are
// unlinked at once, so the directory itself shows nothing).
func openSpoolFiles(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, dir+"/") {
			n++
		}
	}
	return n
}

func randomChunks(seed uint64, sizes ...int) []string {
	r := rand.New(rand.NewPCG(seed, 7))
	var out []string
	for _, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		out = append(out, string(b))
	}
	return out
}

func bodyChunks(f *fakeBackend) []string {
	var out []string
	for _, ev := range f.Events() {
		if ev.Kind == KindBody {
			out = append(out, string(ev.Chunk))
		}
	}
	return out
}

// A body over the in-memory threshold is replayed to the later editor
// byte-exact, chunk for chunk, from the spool file; the file is gone and
// the memory handed back once the message ends.
func TestReplaySpilled(t *testing.T) {
	for _, mem := range []int{100, -1} {
		t.Run(fmt.Sprint("memory=", mem), func(t *testing.T) {
			dir := t.TempDir()
			a, b, c := newFake("a", editor), newFake("b", editor), newFake("c", editor)
			a.On[KindEOM] = step{Edits: []Edit{{Kind: EditAddHeader, Name: "X-A", Value: " 1"}}}
			e := &Engine{SpoolMemory: mem, SpoolDir: dir, Slots: slots(a, b, c)}
			h := open(t, e, allOffer)
			h.EnvelopeToData()
			h.Header("Subject", " s")
			h.EOH()
			chunks := randomChunks(1, 60, 30, 65535, 1, 70000, 10)
			for _, ch := range chunks {
				h.Body(ch)
			}
			if !h.S.MessageSpool().Spilled() || openSpoolFiles(t, dir) != 1 {
				t.Fatalf("spilled %v, open files %d", h.S.MessageSpool().Spilled(), openSpoolFiles(t, dir))
			}
			if rep := h.EOM(); rep.Verdict != Continue {
				t.Errorf("eom = %+v", rep)
			}
			for _, f := range []*fakeBackend{a, b, c} {
				if got := bodyChunks(f); !slices.Equal(got, chunks) {
					t.Errorf("%s got %d chunks (%d bytes), want the %d sent", f.Name(), len(got), len(f.Body()), len(chunks))
				}
			}
			if got := b.Headers(); !slices.Contains(got, "X-A: 1") {
				t.Errorf("b did not see a's header: %q", got)
			}
			if n := openSpoolFiles(t, dir); n != 0 || h.S.MessageSpool() != nil || e.SpoolBudget().Used() != 0 {
				t.Errorf("after EOM: %d open spool files, spool %v, budget used %d", n, h.S.MessageSpool(), e.SpoolBudget().Used())
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("spool dir not empty: %v", ents)
			}
		})
	}
}

// The spool is handed back on every path: EOM, abort, a rejection in the
// content phase, QUIT_NC and the session's close.
func TestSpoolCleanup(t *testing.T) {
	for _, end := range []string{"eom", "abort", "reject", "quitnc", "close"} {
		t.Run(end, func(t *testing.T) {
			dir := t.TempDir()
			a, b := newFake("a", editor), newFake("b", editor)
			if end == "reject" {
				a.Seq[KindBody] = []step{{}, {Verdict: Reject}}
			}
			e := &Engine{SpoolMemory: 10, MemoryBudget: 1 << 20, SpoolDir: dir, Slots: slots(a, b)}
			h := open(t, e, allOffer)
			h.EnvelopeToData()
			h.EOH()
			h.Body("0123456789")
			h.Body("abcdefghij")
			if openSpoolFiles(t, dir) != 1 || e.SpoolBudget().Used() == 0 {
				t.Fatalf("open files %d, budget used %d", openSpoolFiles(t, dir), e.SpoolBudget().Used())
			}
			switch end {
			case "eom", "reject":
				h.EOM()
			case "abort":
				h.Abort()
			case "quitnc":
				h.Do(&Event{Kind: KindQuitNC})
			case "close":
				h.S.Close()
			}
			if n := openSpoolFiles(t, dir); n != 0 || e.SpoolBudget().Used() != 0 {
				t.Errorf("after %s: %d open spool files, budget used %d", end, n, e.SpoolBudget().Used())
			}
		})
	}
}

// Above MaxMessage: 552 5.3.4 at EOM, the backends' message aborted, the
// rest of the message not passed on; the next message is not affected.
func TestMaxMessageRefused(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	e := &Engine{MaxMessage: 100, SpoolDir: t.TempDir(), Slots: slots(a, b)}
	h := open(t, e, allOffer)
	h.EnvelopeToData()
	h.Header("Subject", " s") // 14 bytes
	h.EOH()
	h.Body(strings.Repeat("x", 60))
	if r := h.Body(strings.Repeat("y", 60)); r.Verdict.Objects() {
		t.Errorf("body = %+v: refused before EOM", r)
	}
	rep := h.EOM()
	if rep.Verdict != Reject || rep.Text != "552 5.3.4 Message too big" {
		t.Errorf("eom = %+v, want 552 5.3.4", rep)
	}
	if got, want := a.KindsString(), "connect helo mail rcpt data header eoh body abort"; got != want {
		t.Errorf("a got %q, want %q", got, want)
	}
	if got, want := b.KindsString(), "connect helo mail rcpt data abort"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
	if log := h.Log.String(); !strings.Contains(log, "message too big") || !strings.Contains(log, "limit=100") {
		t.Errorf("log:\n%s", log)
	}
	h.Abort() // the MTA's, after the rejection: nothing more to the backends
	h.Mail()
	h.Rcpt("c@example.net")
	h.Data()
	if rep := h.Message(origHeaders, "small"); rep.Verdict != Continue {
		t.Errorf("next message: eom = %+v", rep)
	}
	if b.Body() != "small" {
		t.Errorf("next message: b got body %q", b.Body())
	}
}

// No MaxMessage (the default): no limit of the engine's.
func TestMaxMessageDefaultUnlimited(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	e := &Engine{SpoolMemory: 1000, SpoolDir: t.TempDir(), Slots: slots(a, b)}
	h := open(t, e, allOffer)
	h.EnvelopeToData()
	h.EOH()
	chunks := randomChunks(2, 65535, 65535, 65535, 65535, 65535)
	for _, c := range chunks {
		h.Body(c)
	}
	if rep := h.EOM(); rep.Verdict != Continue {
		t.Errorf("eom = %+v", rep)
	}
	if got := bodyChunks(b); !slices.Equal(got, chunks) {
		t.Errorf("b got %d bytes", len(b.Body()))
	}
}

// A spool that cannot be written: one log line, 451 4.3.0 at EOM, the
// backends' message aborted.
func TestSpoolErrorTempfails(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	e := &Engine{SpoolMemory: -1, SpoolDir: filepath.Join(t.TempDir(), "missing"), Slots: slots(a, b)}
	h := open(t, e, allOffer)
	h.EnvelopeToData()
	h.EOH()
	h.Body("one")
	h.Body("two")
	rep := h.EOM()
	if rep.Verdict != Tempfail || !strings.HasPrefix(rep.Text, "451 4.3.0 ") {
		t.Errorf("eom = %+v, want 451 4.3.0", rep)
	}
	if got, want := b.KindsString(), "connect helo mail rcpt data abort"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
	if log := h.Log.String(); strings.Count(log, `msg="cannot keep the message`) != 1 || !strings.Contains(log, "missing") {
		t.Errorf("want one log line naming the directory:\n%s", log)
	}
}

// The memory budget is shared by the engine's sessions: when one message
// holds it, the next one goes to disk, and both replay intact.
func TestMemoryBudgetShared(t *testing.T) {
	dir := t.TempDir()
	a, b := newFake("a", editor), newFake("b", editor)
	e := &Engine{SpoolMemory: 1000, MemoryBudget: 1000, SpoolDir: dir, Slots: slots(a, b)}
	h1, h2 := open(t, e, allOffer), open(t, e, allOffer)
	for _, h := range []*harness{h1, h2} {
		h.EnvelopeToData()
		h.EOH()
		h.Body(strings.Repeat("1", 800))
	}
	if h1.S.MessageSpool().Spilled() || !h2.S.MessageSpool().Spilled() || e.SpoolBudget().Used() != 800 { // h1's body
		t.Errorf("spilled: %v %v, budget used %d", h1.S.MessageSpool().Spilled(), h2.S.MessageSpool().Spilled(), e.SpoolBudget().Used())
	}
	h1.EOM()
	h2.EOM()
	if got := b.Body(); got != strings.Repeat("1", 1600) {
		t.Errorf("b got %d bytes, want 1600", len(got))
	}
	if e.SpoolBudget().Used() != 0 {
		t.Errorf("budget used %d after both messages", e.SpoolBudget().Used())
	}
}

// Without a later editor nothing is kept (the body streams through).
func TestNoReplayNothingKept(t *testing.T) {
	a := newFake("a", editor)
	e := &Engine{Slots: slots(a)}
	h := open(t, e, allOffer)
	h.EnvelopeToData()
	h.EOH()
	h.Body("body")
	if h.S.MessageSpool() != nil {
		t.Error("body kept with no replay to do")
	}
}

// Memory is handed back when the last big message in progress ends, not
// before, and not after small messages.
func TestHandBackAfterBigMessages(t *testing.T) {
	released := make(chan struct{}, 4)
	a := newFake("a", Caps{}) // no replay: the body streams through
	e := &Engine{Slots: slots(a)}
	e.SetRelease(func() { released <- struct{}{} })
	h1, h2 := open(t, e, allOffer), open(t, e, allOffer)
	chunk := strings.Repeat("x", 65535)
	for _, h := range []*harness{h1, h2} {
		h.EnvelopeToData()
		h.EOH()
		for n := 0; n < BigMessage; n += len(chunk) {
			h.Body(chunk)
		}
	}
	if got := e.BigActive(); got != 2 {
		t.Fatalf("big messages in progress: %d, want 2", got)
	}
	h1.EOM()
	select {
	case <-released:
		t.Fatal("memory handed back while another big message is in progress")
	default:
	}
	h2.EOM()
	select {
	case <-released:
		t.Fatal("memory handed back before the front end wrote the EOM reply")
	default:
	}
	h2.Abort() // the session's next event
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("memory not handed back after the last big message")
	}
	h1.Mail()
	h1.Rcpt("c@example.net")
	h1.Data()
	h1.Message(origHeaders, "small")
	h1.S.Close()
	select {
	case <-released:
		t.Error("memory handed back after a small message")
	default:
	}
	if e.BigActive() != 0 {
		t.Errorf("big messages in progress: %d, want 0", e.BigActive())
	}
}

// A panic while a spilled message is in progress (a bug): the front end's
// deferred Close (adapters/milter recovers and closes the session) hands
// the spool back.
func TestSpoolCleanupOnPanic(t *testing.T) {
	dir := t.TempDir()
	a, b := newFake("a", editor), newFake("b", editor)
	a.Hook = func(ev *Event) (step, bool) {
		if ev.Kind == KindEOM {
			panic("bug")
		}
		return step{}, false
	}
	e := &Engine{SpoolMemory: -1, SpoolDir: dir, Slots: slots(a, b)}
	h := open(t, e, allOffer)
	func() {
		defer func() { recover() }()
		defer h.S.Close()
		h.EnvelopeToData()
		h.EOH()
		h.Body("spilled")
		if openSpoolFiles(t, dir) != 1 {
			t.Fatal("no spool file")
		}
		h.EOM()
	}()
	if n := openSpoolFiles(t, dir); n != 0 || e.SpoolBudget().Used() != 0 {
		t.Errorf("after the panic: %d open spool files, budget used %d", n, e.SpoolBudget().Used())
	}
}

// Engines given one Budget (a process's reloads; the SMTP front holds it
// too) share it: a message held by one engine's session leaves no room
// for the other's, which spills, and both replay intact.
func TestMemoryBudgetAcrossEngines(t *testing.T) {
	dir := t.TempDir()
	budget := NewBudget(1000)
	a, b := newFake("a", editor), newFake("b", editor)
	e1 := &Engine{SpoolMemory: 1000, MemoryBudget: 1000, Budget: budget, SpoolDir: dir, Slots: slots(a, b)}
	e2 := &Engine{SpoolMemory: 1000, MemoryBudget: 1000, Budget: budget, SpoolDir: dir, Slots: slots(a, b)}
	h1, h2 := open(t, e1, allOffer), open(t, e2, allOffer)
	for _, h := range []*harness{h1, h2} {
		h.EnvelopeToData()
		h.EOH()
		h.Body(strings.Repeat("1", 800))
	}
	if h1.S.MessageSpool().Spilled() || !h2.S.MessageSpool().Spilled() || budget.Used() != 800 { // h1's body
		t.Errorf("spilled: %v %v, budget used %d", h1.S.MessageSpool().Spilled(), h2.S.MessageSpool().Spilled(), budget.Used())
	}
	h1.EOM()
	h2.EOM()
	if budget.Used() != 0 {
		t.Errorf("budget used %d after both messages", budget.Used())
	}
}
