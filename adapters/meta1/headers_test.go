// headers_test.go: the header rules of the MeTA1 model (no hidden
// header; a change replaces the value and keeps the header's own name),
// in positional modifications and in a replacement message alike.

package meta1_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/sim/meta1"
)

func TestChangeKeepsHeaderName(t *testing.T) {
	for _, replace := range []bool{false, true} {
		t.Run(fmt.Sprint("replace=", replace), func(t *testing.T) {
			ed := []pmult.Edit{
				{Kind: pmult.EditChangeHeader, Index: 1, Name: "SUBJECT", Value: " new"},
				{Kind: pmult.EditInsertHeader, Index: 1, Name: "X-Second", Value: " 2"},
			}
			if replace {
				ed = append(ed, pmult.Edit{Kind: pmult.EditReplaceBody, Body: []byte("new body\r\n")})
			}
			f := newFake("f", func(ev *pmult.Event) pmult.Reply {
				if ev.Kind == pmult.KindEOM {
					return pmult.Reply{Edits: ed}
				}
				return pmult.Reply{}
			})
			fx := start(t, nil, f)
			c := fx.dial(meta1sim.Config{})
			r := session(t, c, netip.MustParseAddr("192.0.2.7"), []string{"<b@example.com>"}, testMsg)
			if !replace {
				want := []pmilter.HdrMod{
					{Type: pmilter.HdrReplace, Pos: 1, Name: "Subject", Value: " new"},
					{Type: pmilter.HdrInsert, Pos: 1, Name: "X-Second", Value: " 2"}, // no hidden header above From
				}
				if fmt.Sprint(r.HdrMods) != fmt.Sprint(want) {
					t.Errorf("header mods %+v, want %+v", r.HdrMods, want)
				}
			}
			tr := meta1sim.Transaction{Rcpts: []string{"<b@example.com>"}, Message: []byte(testMsg)}
			if err := tr.Apply(r); err != nil {
				t.Fatal(err)
			}
			body := "body line 1\r\nbody line 2\r\n"
			if replace {
				body = "new body\r\n"
			}
			if got, want := string(tr.Message), "From: a@example.org\r\nX-Second: 2\r\nSubject: new\r\nTo: b@example.com\r\n\r\n"+body; got != want {
				t.Errorf("message:\n%q\nwant\n%q", got, want)
			}
		})
	}
}
