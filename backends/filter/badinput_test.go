package filter_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Rules that do not compile are all reported at once with their places,
// never a panic, and no rule set is returned to run: a regex over the
// size cap, a bad body_regex, body_max beyond its cap or without
// body_regex, an unreadable list file, odd value types.
func TestFilterBadInput(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, "long")
	os.WriteFile(long, []byte(strings.Repeat("x", 70000)+"\n"), 0o644)
	text := `
[[rule]]
body_regex = "` + strings.Repeat("a", 5000) + `"
action = "reject"
[[rule]]
body_regex = "(unclosed"
action = "reject"
[[rule]]
body_regex = "casino"
body_max = 999999999
action = "reject"
[[rule]]
body_max = 10
action = "reject"
[[rule]]
action = "delete_header"
name = "Received"
value_regex = "` + strings.Repeat(`\\d{1000}`, 25) + `"
[[rule]]
match = { client_file = "` + dir + `" }
action = "reject"
[[rule]]
match = { sender_file = "` + long + `" }
action = "reject"
[[rule]]
match = 5
action = "reject"
[[rule]]
match = { rcpt = "a@example.com" }
action = 7
[[rule]]
action = "reject"
code = 550
[[rule]]
action = "reject"
code = "550"
xcode = "4.7.1"
[[rule]]
action = "change_header"
name = "Subject"
[[rule]]
action = "add_rcpt"
`
	s, errs := parse(t, text)
	if len(errs) == 0 {
		t.Fatalf("compiled %d rules, want errors", len(s.Rules))
	}
	got := errText(errs)
	for _, want := range []string{
		"rule[0].body_regex: regular expression too long: 5000 bytes",
		"rule[1].body_regex: bad regular expression",
		"rule[2].body_max: ",
		"rule[3].body_max: without body_regex",
		"rule[4].value_regex: regular expression too large: ",
		"rule[5].match.client_file: " + dir + ": is a directory, not a list file",
		"rule[6].match.sender_file: " + long + ": after line 0: bufio.Scanner: token too long",
		"rule[7].match: ",
		"rule[8].action: ",
		"rule[9].code: ",
		`rule[10].xcode: "4.7.1": want an extended code of the reply's class (5.x.y)`,
		"rule[11].value: required for action change_header",
		"rule[12].addr: required for action add_rcpt",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func errText(errs []error) string {
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	return strings.Join(all, "\n")
}
