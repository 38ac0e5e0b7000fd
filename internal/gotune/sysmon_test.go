package gotune

import (
	"slices"
	"testing"
)

func TestSysmonEnv(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string // GODEBUG after, "" when unchanged
	}{
		{[]string{"PATH=/bin"}, "GODEBUG=" + SysmonSetting},
		{[]string{"GODEBUG="}, "GODEBUG=" + SysmonSetting},
		{[]string{"GODEBUG=madvdontneed=1"}, "GODEBUG=madvdontneed=1," + SysmonSetting},
		{[]string{"GODEBUG=schedtrace=0"}, ""},
		{[]string{"GODEBUG=gctrace=1,schedtrace=1000"}, ""},
	} {
		out, ok := SysmonEnv(c.in)
		if ok != (c.want != "") {
			t.Errorf("%q: changed %v", c.in, ok)
			continue
		}
		if ok && !slices.Contains(out, c.want) {
			t.Errorf("%q -> %q, want %s", c.in, out, c.want)
		}
	}
}
