package milterkind

import (
	"testing"

	"github.com/mailmux/mailmux/macros"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

func TestRoundTrip(t *testing.T) {
	for k := pmult.KindConnect; k <= pmult.KindUnknown; k++ {
		c := Cmd(k)
		if c == 0 {
			t.Errorf("%s has no command letter", k)
			continue
		}
		if got := Kind(c); got != k {
			t.Errorf("Kind(Cmd(%s)) = %s", k, got)
		}
		if st, ok := Stage(k); ok {
			if got, ok := OfStage(st); !ok || got != k {
				t.Errorf("OfStage(Stage(%s)) = %s, %v", k, got, ok)
			}
			if sc, ok := mp.StageOf(c); !ok || sc != st {
				t.Errorf("%s: milterproto.StageOf(%q) = %d, %v; Stage = %d", k, c, sc, ok, st)
			}
		}
	}
	for _, c := range []byte{mp.CmdOptNeg, mp.CmdMacro, 0, 'z'} {
		if k := Kind(c); k != pmult.KindNone {
			t.Errorf("Kind(%q) = %s, want none", c, k)
		}
	}
	if Cmd(pmult.KindNone) != 0 {
		t.Error("KindNone has a command letter")
	}
	n := 0
	for st := macros.Stage(0); st < macros.NumStages; st++ {
		if _, ok := OfStage(st); ok {
			n++
		}
	}
	if n != macros.NumStages {
		t.Errorf("%d of %d stages have a kind", n, macros.NumStages)
	}
}

func TestLetters(t *testing.T) {
	// The letters as the protocol documents them.
	want := map[pmult.Kind]byte{pmult.KindConnect: 'C', pmult.KindHelo: 'H', pmult.KindMail: 'M',
		pmult.KindRcpt: 'R', pmult.KindData: 'T', pmult.KindHeader: 'L', pmult.KindEOH: 'N',
		pmult.KindBody: 'B', pmult.KindEOM: 'E', pmult.KindAbort: 'A', pmult.KindQuit: 'Q',
		pmult.KindQuitNC: 'K', pmult.KindUnknown: 'U'}
	for k, c := range want {
		if Cmd(k) != c {
			t.Errorf("Cmd(%s) = %q, want %q", k, Cmd(k), c)
		}
	}
}
