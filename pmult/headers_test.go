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

// strings lists the visible headers as "Name:Value".
func (m *headerModel) strings() []string {
	var out []string
	m.visible(func(f hfield) bool {
		out = append(out, f.name+":"+f.value)
		return true
	})
	return out
}

// add applies e as the MTA would, an added header getting a new id.
func (m *headerModel) add(e Edit) { m.apply(e, m.newID()) }

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
			[]string{"From: a", "Subject: one", "X-A: 1", "SUBJECT: new", "To: b"}}, // the edit's name
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
			m.add(tc.e)
			if got := m.strings(); !slices.Equal(got, tc.want) {
				t.Errorf("after %+v:\n got %q\nwant %q", tc.e, got, tc.want)
			}
			if len(m.orig) != len(orig)+1 { // the hidden Received header is in the list
				t.Errorf("apply changed the original list: %d fields", len(m.orig))
			}
		})
	}
}

func TestHeaderModelApplySequence(t *testing.T) {
	m := model("A: 1", "B: 2")
	m.add(Edit{Kind: EditInsertHeader, Index: 1, Name: "I1", Value: " x"})
	m.add(Edit{Kind: EditInsertHeader, Index: 0, Name: "I0", Value: " y"})
	m.add(Edit{Kind: EditChangeHeader, Index: 1, Name: "b", Value: " 22"})
	m.add(Edit{Kind: EditChangeHeader, Index: 1, Name: "A"})
	m.add(Edit{Kind: EditAddHeader, Name: "Z", Value: " z"})
	want := []string{"I0: y", "I1: x", "b: 22", "Z: z"} // a change takes the new name
	if got := m.strings(); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	m.reset()
	if len(m.strings()) != 0 || len(m.orig) != 1 {
		t.Errorf("reset left %d/%d fields", len(m.list.Fields), len(m.orig))
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
			[]string{"From: a", "X: 1", "subject: new", "X: 2"}},
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
				m.add(e)
			}
			got, ok := m.translate(m.view(), tc.e)
			if ok != tc.ok {
				t.Fatalf("translate(%+v) ok = %v, want %v", tc.e, ok, tc.ok)
			}
			if !ok {
				return
			}
			if got.Index != tc.want.Index || got.Kind != tc.e.Kind || got.Name != tc.e.Name || got.Value != tc.e.Value {
				t.Errorf("translate(%+v) = %+v, want index %d", tc.e, got, tc.want.Index)
			}
			m.add(got)
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
	m.add(Edit{Kind: EditInsertHeader, Index: 1, Name: "X", Value: " x"})
	if got := m.list.Fields[1].Name; got != "X" {
		t.Fatalf("insert 1 landed at %v", m.list.Fields)
	}
	e, _ := m.translate(m.view(), Edit{Kind: EditInsertHeader, Index: 1, Name: "Y", Value: " y"})
	if e.Index != 2 { // before B, which is now at position 2 behind X
		t.Fatalf("translated insert index %d, want 2", e.Index)
	}
}

// What Postfix shows the next milter (cleanup_milter.c): inserts count the
// complete list, the hidden Received header included, so INSHEADER 0
// then INSHEADER 1 gives X-Top, X-Next (the second goes after the first
// header of the list, which is now X-Top); a change takes the new name.
func TestHeaderModelPostfixSemantics(t *testing.T) {
	m := model("From: a", "Subject: s")
	m.add(Edit{Kind: EditInsertHeader, Index: 0, Name: "X-Top", Value: " 1"})
	m.add(Edit{Kind: EditInsertHeader, Index: 1, Name: "X-Next", Value: " 2"})
	if got, want := m.strings(), []string{"X-Top: 1", "X-Next: 2", "From: a", "Subject: s"}; !slices.Equal(got, want) {
		t.Errorf("inserts 0 then 1: got %q, want %q", got, want)
	}
	m.add(Edit{Kind: EditChangeHeader, Index: 1, Name: "SUBJECT", Value: " S"})
	if got, want := m.strings(), []string{"X-Top: 1", "X-Next: 2", "From: a", "SUBJECT: S"}; !slices.Equal(got, want) {
		t.Errorf("change with another name case: got %q, want %q", got, want)
	}
	// A change never touches the hidden header, even by its name.
	m.add(Edit{Kind: EditChangeHeader, Index: 1, Name: "Received", Value: ""})
	if m.list.Fields[2].Name != "Received" || !m.list.Fields[2].Hidden {
		t.Errorf("hidden header changed: %+v", m.list.Fields)
	}
}

// A backend's own successive edits, made against its view of the
// original, translated into the current list (parallel content mode).
func TestHeaderModelTranslateOwnEdits(t *testing.T) {
	orig := []string{"X-Spam: 1", "X-Spam: 2", "X-Spam: 3", "Subject: s"}
	for _, tc := range []struct {
		name  string
		first []Edit // an earlier backend's edits
		own   []Edit // this backend's, in order
		want  []string
	}{
		{"delete the first two by index 1 twice", nil,
			[]Edit{{Kind: EditChangeHeader, Index: 1, Name: "X-Spam"}, {Kind: EditChangeHeader, Index: 1, Name: "X-Spam"}},
			[]string{"X-Spam: 3", "Subject: s"}},
		{"add then change the added header", nil,
			[]Edit{{Kind: EditAddHeader, Name: "X-New", Value: " a"}, {Kind: EditChangeHeader, Index: 1, Name: "X-New", Value: " b"}},
			[]string{"X-Spam: 1", "X-Spam: 2", "X-Spam: 3", "Subject: s", "X-New: b"}},
		{"two inserts at the same index: the later on top", nil,
			[]Edit{{Kind: EditInsertHeader, Index: 1, Name: "X-A", Value: " a"}, {Kind: EditInsertHeader, Index: 1, Name: "X-B", Value: " b"}},
			[]string{"X-B: b", "X-A: a", "X-Spam: 1", "X-Spam: 2", "X-Spam: 3", "Subject: s"}},
		{"own deletes after an earlier backend's insert of the same name",
			[]Edit{{Kind: EditInsertHeader, Index: 1, Name: "X-Spam", Value: " 0"}},
			[]Edit{{Kind: EditChangeHeader, Index: 1, Name: "X-Spam"}, {Kind: EditChangeHeader, Index: 1, Name: "X-Spam"}},
			[]string{"X-Spam: 0", "X-Spam: 3", "Subject: s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := model(orig...)
			for _, e := range tc.first {
				v := m.view()
				e, _ = m.translate(v, e)
				m.add(e)
			}
			v := m.view()
			for _, e := range tc.own {
				id := m.newID()
				if te, ok := m.translate(v, e); ok {
					m.apply(te, id)
				}
				v.apply(e, id)
			}
			if got := m.strings(); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
