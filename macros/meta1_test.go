// meta1_test.go: pmult's MeTA1 macro rules and the synthesised macros per
// stage.

package macros

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestCheckMeta1Macros(t *testing.T) {
	names, errs := CheckMeta1Macros(M1Dot, []string{"{msgid}", "taid", "cn_subject", "taid"}, 0)
	if len(errs) != 0 || !slices.Equal(names, []string{"msgid", "taid", "tls_cn_subject"}) {
		t.Errorf("dot: %q %v", names, errs)
	}
	for _, tc := range []struct {
		st   Meta1Stage
		name string
		want string
	}{
		{M1Helo, "taid", "before the mail stage"},
		{M1Rcpt, "msgid", "only at the dot stage"},
		{M1Connect, "tls_vrfy", "only after STARTTLS"},
		{M1Mail, "i", "provided by pmult itself"},
		{M1Mail, "bogus", "unknown MeTA1 macro"},
	} {
		_, errs := CheckMeta1Macros(tc.st, []string{tc.name}, 8)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%s %s: %v", tc.st, tc.name, errs)
		}
	}
	if _, errs := CheckMeta1Macros(M1Mail, Meta1Macros[:9], 0); len(errs) != 1 || !strings.Contains(errs[0].Error(), "at most 8") {
		t.Errorf("limit: %v", errs)
	}
	if st, err := ParseMeta1Stage("envmail"); err != nil || st != M1Mail {
		t.Errorf("envmail: %v %v", st, err)
	}
}

func TestMeta1Synth(t *testing.T) {
	s := &Meta1State{SessionID: "S1", ClientAddr: netip.MustParseAddr("2001:db8::1"), ClientPort: 25,
		Helo: "h.example", From: "a@x", RcptAddr: "b@y.example", NRcpts: 2, NBadRcpts: 1, Version: "v"}
	names := func(st Meta1Stage) string {
		p := Meta1Synth(nil, st, s)
		var n []string
		for i := 0; i < len(p); i += 2 {
			n = append(n, Normalize(p[i])+"="+p[i+1])
		}
		return strings.Join(n, " ")
	}
	base := "i=S1 client_addr=2001:db8::1 client_port=25 r=SMTP multiplexer=pmult mult_version=v"
	want := map[Meta1Stage]string{
		M1Connect: base,
		M1Helo:    base + " s=h.example",
		M1Mail:    base + " s=h.example f=a@x ntries=1 nrcpts=2 nbadrcpts=1",
		M1Rcpt:    base + " s=h.example f=a@x ntries=1 nrcpts=2 nbadrcpts=1 rcpt_addr=b@y.example rcpt_host=y.example",
		M1Data:    base + " s=h.example f=a@x ntries=1",
		M1Dot:     base + " s=h.example f=a@x ntries=1",
	}
	for st := Meta1Stage(0); st < M1NumStages; st++ {
		if got := names(st); got != want[st] {
			t.Errorf("%s:\n got %s\nwant %s", st, got, want[st])
		}
	}
}
