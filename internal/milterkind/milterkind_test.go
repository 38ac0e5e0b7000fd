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
	for st := mp.Stage(0); st < mp.NumStages; st++ {
		if _, ok := OfStage(st); ok {
			n++
		}
	}
	if n != mp.NumStages {
		t.Errorf("%d of %d stages have a kind", n, mp.NumStages)
	}
}

// macros.Stage and milterproto.Stage are two types for the same SMFIM_*
// numbers (macros does not import the codec): the conversions between
// them (mtasim, cmd/pmult) rely on this.
func TestStagesAgree(t *testing.T) {
	if macros.NumStages != mp.NumStages {
		t.Fatalf("macros has %d stages, milterproto %d", macros.NumStages, mp.NumStages)
	}
	pairs := []struct {
		m macros.Stage
		p mp.Stage
	}{
		{macros.Connect, mp.StageConnect}, {macros.Helo, mp.StageHelo}, {macros.EnvFrom, mp.StageEnvFrom},
		{macros.EnvRcpt, mp.StageEnvRcpt}, {macros.Data, mp.StageData}, {macros.EOM, mp.StageEOM},
		{macros.EOH, mp.StageEOH},
	}
	for _, c := range pairs {
		if macros.Stage(c.p) != c.m || c.m.String() != c.p.String() {
			t.Errorf("macros %s (%d) against milterproto %s (%d)", c.m, int(c.m), c.p, uint32(c.p))
		}
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
