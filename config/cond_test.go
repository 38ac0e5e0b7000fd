package config

import (
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
)

// The shared `if` key compiles for every backend type into the slot's
// condition; a backend without it has none.
func TestBackendCondition(t *testing.T) {
	cfg := mustParse(t, `
[milter]
listen = ["inbound=inet:127.0.0.1:7000", "submission=inet:127.0.0.1:7001"]
[[backend]]
name = "spam"
address = "inet:1@localhost"
[backend.if]
listener = "inbound"
[[backend]]
name = "callout"
type = "callout"
[backend.if]
rcpt_domain = ["example.com"]
[[backend]]
name = "all"
address = "inet:2@localhost"
`)
	e, err := cfg.Engine(nil)
	if err != nil {
		t.Fatal(err)
	}
	c0, c1, c2 := e.Slots[0].Policy.Condition, e.Slots[1].Policy.Condition, e.Slots[2].Policy.Condition
	if c0 == nil || c1 == nil || c2 != nil {
		t.Fatalf("conditions %v %v %v", c0, c1, c2)
	}
	if c0.Eval(&pmult.Facts{Listener: "submission"}) != pmult.No || c0.Eval(&pmult.Facts{Listener: "inbound"}) != pmult.Yes {
		t.Errorf("listener condition wrong")
	}
	if c1.Stage() != pmult.KindData {
		t.Errorf("rcpt condition stage %v", c1.Stage())
	}
}

// Every bad condition is an error naming its backend and key.
func TestBackendConditionErrors(t *testing.T) {
	got := strings.Join(parseErrors(t, `
[[backend]]
name = "a"
address = "inet:1@localhost"
[backend.if]
client = "300.1.1.1"
sender_regex = "("
[[backend]]
name = "b"
type = "callout"
if = "yes"
`), "\n")
	for _, want := range []string{
		`backend[0] "a": if.client[0]: "300.1.1.1": not an address or CIDR`,
		`backend[0] "a": if.sender_regex: bad regular expression`,
		`backend[1] "b": if: want a table of conditions`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}
