// strip_test.go: StripBrackets, the one angle-bracket stripper of the
// front ends and the simulators.

package macros

import "testing"

func TestStripBrackets(t *testing.T) {
	for in, want := range map[string]string{
		"<a@b>": "a@b", " <a@b> ": "a@b", "a@b": "a@b", "<>": "", "": "", "<": "<", "<a@b": "<a@b", "a@b>": "a@b>",
	} {
		if got := StripBrackets(in); got != want {
			t.Errorf("StripBrackets(%q) = %q, want %q", in, got, want)
		}
	}
}
