// headerlist_test.go: the exported HeaderList: what Apply reports for
// each edit, the name rule (Postfix's by default, Sendmail's with
// KeepName), and hidden fields skipped by Nth and Count.

package pmult

import (
	"slices"
	"testing"
)

func TestHeaderListApply(t *testing.T) {
	list := func() *HeaderList {
		return &HeaderList{Fields: []Header{{Name: "From", Value: " a"}, {Name: "Subject", Value: " one"}, {Name: "subject", Value: " two"}}}
	}
	for _, tc := range []struct {
		name     string
		keepName bool
		e        Edit
		want     HeaderChange
		fields   []string
	}{
		{"add", false, Edit{Kind: EditAddHeader, Name: "X", Value: " x"},
			HeaderChange{HeaderAppended, 3, Header{Name: "X", Value: " x"}}, []string{"From", "Subject", "subject", "X"}},
		{"insert clamps", false, Edit{Kind: EditInsertHeader, Index: 9, Name: "X", Value: " x"},
			HeaderChange{HeaderInserted, 3, Header{Name: "X", Value: " x"}}, []string{"From", "Subject", "subject", "X"}},
		{"insert top", false, Edit{Kind: EditInsertHeader, Index: -1, Name: "X", Value: " x"},
			HeaderChange{HeaderInserted, 0, Header{Name: "X", Value: " x"}}, []string{"X", "From", "Subject", "subject"}},
		{"change 2nd takes the name", false, Edit{Kind: EditChangeHeader, Index: 2, Name: "SUBJECT", Value: " 2"},
			HeaderChange{HeaderChanged, 2, Header{Name: "SUBJECT", Value: " 2"}}, []string{"From", "Subject", "SUBJECT"}},
		{"change keeps the name", true, Edit{Kind: EditChangeHeader, Index: 2, Name: "SUBJECT", Value: " 2"},
			HeaderChange{HeaderChanged, 2, Header{Name: "subject", Value: " 2"}}, []string{"From", "Subject", "subject"}},
		{"change index 0 is the 1st", false, Edit{Kind: EditChangeHeader, Index: 0, Name: "subject", Value: ""},
			HeaderChange{HeaderDeleted, 1, Header{Name: "Subject", Value: " one"}}, []string{"From", "subject"}},
		{"change of a missing one appends", true, Edit{Kind: EditChangeHeader, Index: 3, Name: "Subject", Value: " 3"},
			HeaderChange{HeaderAppended, 3, Header{Name: "Subject", Value: " 3"}}, []string{"From", "Subject", "subject", "Subject"}},
		{"delete of a missing one", false, Edit{Kind: EditChangeHeader, Index: 1, Name: "To"},
			HeaderChange{}, []string{"From", "Subject", "subject"}},
		{"not a header edit", false, Edit{Kind: EditAddRcpt, Addr: "<r@x>"},
			HeaderChange{}, []string{"From", "Subject", "subject"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := list()
			l.KeepName = tc.keepName
			if got := l.Apply(tc.e); got != tc.want {
				t.Errorf("Apply = %+v, want %+v", got, tc.want)
			}
			var names []string
			for _, f := range l.Fields {
				names = append(names, f.Name)
			}
			if !slices.Equal(names, tc.fields) {
				t.Errorf("fields %q, want %q", names, tc.fields)
			}
		})
	}
}

func TestHeaderListHidden(t *testing.T) {
	l := &HeaderList{Fields: []Header{{Name: "Received", Hidden: true}, {Name: "Received", Value: " r1"}, {Name: "X"}}}
	if got := l.Nth("received", 1); got != 1 {
		t.Errorf("Nth(received, 1) = %d, want 1 (the hidden one is skipped)", got)
	}
	if got := l.Nth("received", 2); got != -1 {
		t.Errorf("Nth(received, 2) = %d, want -1", got)
	}
	if got := l.Count("Received"); got != 1 {
		t.Errorf("Count = %d, want 1", got)
	}
	if c := l.Apply(Edit{Kind: EditInsertHeader, Index: 1, Name: "Y"}); c.Pos != 1 || l.Fields[0].Name != "Received" || !l.Fields[0].Hidden {
		t.Errorf("insert 1 counts the hidden field: %+v, %+v", c, l.Fields)
	}
}
