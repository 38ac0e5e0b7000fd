package bench

import "testing"

// The conditions and filter lines run (figures are make bench's; no
// timing is asserted here): every message passes, and the condition
// is asked at every stage up to EOH of each backend.
func TestRulesBenchRuns(t *testing.T) {
	c, err := ConditionBench(100)
	if err != nil {
		t.Fatal(err)
	}
	// 5 backends, each asked at MAIL, RCPT, DATA, 3 headers and EOH.
	if c.Evals != 5*7 {
		t.Errorf("condition evaluations per message %d, want 35", c.Evals)
	}
	if _, err := FilterBench(100); err != nil {
		t.Fatal(err)
	}
}
