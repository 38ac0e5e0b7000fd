// message_test.go: the header rules mtasim applies (Sendmail's: no hidden
// header, a change keeps the field's own name).

package mtasim

import (
	"testing"

	"github.com/mailmux/mailmux/pmult"
)

func TestApplyChangeKeepsName(t *testing.T) {
	m := &Message{Headers: []Header{{"From", " a"}, {"Subject", " one"}}}
	m.Apply([]pmult.Edit{
		{Kind: pmult.EditChangeHeader, Name: "SUBJECT", Index: 1, Value: " two"},
		{Kind: pmult.EditInsertHeader, Index: 1, Name: "X-Second", Value: " 2"},
	})
	want := []Header{{"From", " a"}, {"X-Second", " 2"}, {"Subject", " two"}}
	if len(m.Headers) != len(want) {
		t.Fatalf("headers %q, want %q", m.Headers, want)
	}
	for i := range want {
		if m.Headers[i] != want[i] {
			t.Errorf("header %d: %q, want %q", i, m.Headers[i], want[i])
		}
	}
}
