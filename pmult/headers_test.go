package pmult

import (
	"slices"
	"strings"
	"testing"
)

// model builds a header model from "Name:Value" strings.
func model(fields ...string) *headerModel {
	m := &headerModel{}
	for _, f := range fields {
		name, value, _ := strings.Cut(f, ":")
		m.received(name, value)
	}
	return m
}

func (m *headerModel) strings() []string {
	var out []string
	for _, f := range m.list {
		out = append(out, f.name+":"+f.value)
	}
	return out
}

func TestHeaderModelApply(t *testing.T) {
	orig := []string{"From: a", "Subject: one", "X-A: 1", "subject: two", "To: b"}
	for _, tc := range []struct {
		name string
		e    Edit
		want []string
	}{
		{"add appends", Edit{Kind: EditAddHeader, Name: "X-New", Value: " n"},
			[]string{"From: a", "Subject: one", "X-A: 1", "subject: two", "To: b", "X-New: n"}},
		{"insert 0 is before the first visible", Edit{Kind: EditInsertHeader, Index: 0, Name: "X-New", Value: " n"},
			[]string{"X-New: n", "From: a", "Subject: one", "X-A: 1", "subject: two", "To: b"}},
		{"insert 1 is after the hidden Received", Edit{Kind: EditInsertHeader, Index: 1, Name: "X-New", Value: " n"},
			[]string{"X-New: n", "From: a", "Subject: one", "X-A: 1", "subject: two", "To: b"}},
		{"insert 2", Edit{Kind: EditInsertHeader, Index: 2, Name: "X-New", Value: " n"},
			[]string{"From: a", "X-New: n", "Subject: one", "X-A: 1", "subject: two", "To: b"}},
		{"insert at the end", Edit{Kind: EditInsertHeader, Index: 6, Name: "X-New", Value: " n"},
			[]string{"From: a", "Subject: one", "X-A: 1", "subject: two", "To: b", "X-New: n"}},
		{"insert past the end appends", Edit{Kind: EditInsertHeader, Index: 99, Name: "X-New", Value: " n"},
			[]string{"From: a", "Subject: one", "X-A: 1", "subject: two", "To: b", "X-New: n"}},
		{"change first", Edit{Kind: EditChangeHeader, Index: 1, Name: "Subject", Value: " new"},
			[]string{"From: a", "Subject: new", "X-A: 1", "subject: two", "To: b"}},
		{"change index 0 counts as 1", Edit{Kind: EditChangeHeader, Index: 0, Name: "Subject", Value: " new"},
			[]string{"From: a", "Subject: new", "X-A: 1", "subject: two", "To: b"}},
		{"change 2nd, case-insensitive", Edit{Kind: EditChangeHeader, Index: 2, Name: "SUBJECT", Value: " new"},
			[]string{"From: a", "Subject: one", "X-A: 1", "subject: new", "To: b"}},
		{"empty value deletes", Edit{Kind: EditChangeHeader, Index: 1, Name: "subject", Value: ""},
			[]string{"From: a", "X-A: 1", "subject: two", "To: b"}},
		{"delete 2nd", Edit{Kind: EditChangeHeader, Index: 2, Name: "Subject", Value: ""},
			[]string{"From: a", "Subject: one", "X-A: 1", "To: b"}},
		{"change of a missing occurrence appends", Edit{Kind: EditChangeHeader, Index: 3, Name: "Subject", Value: " three"},
			[]string{"From: a", "Subject: one", "X-A: 1", "subject: two", "To: b", "Subject: three"}},
		{"change of a missing name appends", Edit{Kind: EditChangeHeader, Index: 1, Name: "X-None", Value: " v"},
			[]string{"From: a", "Subject: one", "X-A: 1", "subject: two", "To: b", "X-None: v"}},
		{"delete of a missing occurrence is a no-op", Edit{Kind: EditChangeHeader, Index: 3, Name: "Subject"},
			orig},
		{"delete of a missing name is a no-op", Edit{Kind: EditChangeHeader, Index: 1, Name: "X-None"},
			orig},
		{"envelope edits leave headers alone", Edit{Kind: EditAddRcpt, Addr: "<c@example.net>"}, orig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := model(orig...)
			m.apply(tc.e)
			if got := m.strings(); !slices.Equal(got, tc.want) {
				t.Errorf("after %+v:\n got %q\nwant %q", tc.e, got, tc.want)
			}
			if len(m.orig) != len(orig) {
				t.Errorf("apply changed the original list: %d fields", len(m.orig))
			}
		})
	}
}

func TestHeaderModelApplySequence(t *testing.T) {
	m := model("A: 1", "B: 2")
	m.apply(Edit{Kind: EditInsertHeader, Index: 1, Name: "I1", Value: " x"})
	m.apply(Edit{Kind: EditInsertHeader, Index: 0, Name: "I0", Value: " y"})
	m.apply(Edit{Kind: EditChangeHeader, Index: 1, Name: "b", Value: " 22"})
	m.apply(Edit{Kind: EditChangeHeader, Index: 1, Name: "A"})
	m.apply(Edit{Kind: EditAddHeader, Name: "Z", Value: " z"})
	want := []string{"I0: y", "I1: x", "B: 22", "Z: z"}
	if got := m.strings(); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	m.reset()
	if len(m.list) != 0 || len(m.orig) != 0 {
		t.Errorf("reset left %d/%d fields", len(m.list), len(m.orig))
	}
	m.received("C", " 3")
	if got := m.strings(); !slices.Equal(got, []string{"C: 3"}) {
		t.Errorf("after reset: %q", got)
	}
}

// TestHeaderModelTranslate: the first backend's edits are applied, then the
// second backend's edit (made against the original list) is translated.
func TestHeaderModelTranslate(t *testing.T) {
	orig := []string{"From: a", "Subject: one", "X: 1", "Subject: two", "X: 2"}
	for _, tc := range []struct {
		name  string
		first []Edit
		e     Edit
		want  Edit // Index only matters
		ok    bool
		after []string // the list after applying the translated edit
	}{
		{"no earlier edits: unchanged",
			nil,
			Edit{Kind: EditChangeHeader, Index: 2, Name: "X", Value: " new"},
			Edit{Index: 2}, true,
			[]string{"From: a", "Subject: one", "X: 1", "Subject: two", "X: new"}},
		{"change of a header deleted earlier is dropped",
			[]Edit{{Kind: EditChangeHeader, Index: 1, Name: "Subject"}},
			Edit{Kind: EditChangeHeader, Index: 1, Name: "Subject", Value: " new"},
			Edit{}, false, nil},
		{"change after a delete of an earlier occurrence shifts the index",
			[]Edit{{Kind: EditChangeHeader, Index: 1, Name: "Subject"}},
			Edit{Kind: EditChangeHeader, Index: 2, Name: "subject", Value: " new"},
			Edit{Index: 1}, true,
			[]string{"From: a", "X: 1", "Subject: new", "X: 2"}},
		{"change after an insert of the same name shifts the index",
			[]Edit{{Kind: EditInsertHeader, Index: 1, Name: "X", Value: " 0"}},
			Edit{Kind: EditChangeHeader, Index: 2, Name: "X", Value: " new"},
			Edit{Index: 3}, true,
			[]string{"X: 0", "From: a", "Subject: one", "X: 1", "Subject: two", "X: new"}},
		{"change of a header changed earlier still applies",
			[]Edit{{Kind: EditChangeHeader, Index: 1, Name: "X", Value: " first"}},
			Edit{Kind: EditChangeHeader, Index: 1, Name: "X", Value: " second"},
			Edit{Index: 1}, true,
			[]string{"From: a", "Subject: one", "X: second", "Subject: two", "X: 2"}},
		{"change of a name not in the original appends after earlier adds",
			[]Edit{{Kind: EditAddHeader, Name: "Y", Value: " added"}},
			Edit{Kind: EditChangeHeader, Index: 1, Name: "Y", Value: " mine"},
			Edit{Index: 2}, true,
			[]string{"From: a", "Subject: one", "X: 1", "Subject: two", "X: 2", "Y: added", "Y: mine"}},
		{"delete of a name not in the original is dropped",
			[]Edit{{Kind: EditAddHeader, Name: "Y", Value: " added"}},
			Edit{Kind: EditChangeHeader, Index: 1, Name: "Y"},
			Edit{}, false, nil},
		{"insert after an earlier insert",
			[]Edit{{Kind: EditInsertHeader, Index: 1, Name: "I", Value: " i"}},
			Edit{Kind: EditInsertHeader, Index: 3, Name: "J", Value: " j"},
			Edit{Index: 4}, true,
			[]string{"I: i", "From: a", "Subject: one", "J: j", "X: 1", "Subject: two", "X: 2"}},
		{"insert anchored on a deleted header moves to the next survivor",
			[]Edit{{Kind: EditChangeHeader, Index: 1, Name: "Subject"}},
			Edit{Kind: EditInsertHeader, Index: 2, Name: "J", Value: " j"},
			Edit{Index: 2}, true,
			[]string{"From: a", "J: j", "X: 1", "Subject: two", "X: 2"}},
		{"insert past the end appends",
			[]Edit{{Kind: EditAddHeader, Name: "Y", Value: " y"}},
			Edit{Kind: EditInsertHeader, Index: 50, Name: "J", Value: " j"},
			Edit{Index: 7}, true,
			[]string{"From: a", "Subject: one", "X: 1", "Subject: two", "X: 2", "Y: y", "J: j"}},
		{"insert at 0 stays before the hidden Received header",
			[]Edit{{Kind: EditInsertHeader, Index: 1, Name: "I", Value: " i"}},
			Edit{Kind: EditInsertHeader, Index: 0, Name: "J", Value: " j"},
			Edit{Index: 0}, true,
			[]string{"J: j", "I: i", "From: a", "Subject: one", "X: 1", "Subject: two", "X: 2"}},
		{"add is not translated",
			[]Edit{{Kind: EditChangeHeader, Index: 1, Name: "From"}},
			Edit{Kind: EditAddHeader, Name: "Z", Value: " z"},
			Edit{Index: 0}, true,
			[]string{"Subject: one", "X: 1", "Subject: two", "X: 2", "Z: z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := model(orig...)
			for _, e := range tc.first {
				m.apply(e)
			}
			got, ok := m.translate(tc.e)
			if ok != tc.ok {
				t.Fatalf("translate(%+v) ok = %v, want %v", tc.e, ok, tc.ok)
			}
			if !ok {
				return
			}
			if got.Index != tc.want.Index || got.Kind != tc.e.Kind || got.Name != tc.e.Name || got.Value != tc.e.Value {
				t.Errorf("translate(%+v) = %+v, want index %d", tc.e, got, tc.want.Index)
			}
			m.apply(got)
			if l := m.strings(); !slices.Equal(l, tc.after) {
				t.Errorf("after:\n got %q\nwant %q", l, tc.after)
			}
		})
	}
}

// Without a hidden MTA header (the MeTA1 model), insert index i is the
// position i in the list the backends saw.
func TestHeaderModelNoHidden(t *testing.T) {
	m := &headerModel{noHidden: true}
	m.received("A", " 1")
	m.received("B", " 2")
	m.apply(Edit{Kind: EditInsertHeader, Index: 1, Name: "X", Value: " x"})
	if got := m.list[1].name; got != "X" {
		t.Fatalf("insert 1 landed at %v", m.list)
	}
	e, _ := m.translate(Edit{Kind: EditInsertHeader, Index: 2, Name: "Y", Value: " y"})
	if e.Index != 3 { // before B, which is now at position 2 behind X
		t.Fatalf("translated insert index %d, want 3", e.Index)
	}
}
