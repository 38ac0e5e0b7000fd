// flags_test.go: the parser of smtps's policy_milter flags.

package meta1sim_test

import (
	"testing"

	"github.com/mailmux/mailmux/sim/meta1"
)

func TestParseFlags(t *testing.T) {
	if f, err := meta1sim.ParseFlags("abort,accept_but_reconnect"); err != nil || f != meta1sim.FlagAbort|meta1sim.FlagAcceptButReconnect {
		t.Errorf("%v %v", f, err)
	}
	if _, err := meta1sim.ParseFlags("sometimes"); err == nil {
		t.Error("bad flag accepted")
	}
}
