// headers.go: the header list and its edit rules (HeaderList, shared by
// the engine, the MeTA1 front end and mtasim), and the engine's header
// model built on it. The model holds the complete header list as the MTA
// has it, the MTA's own hidden Received header included (marked hidden:
// backends never see it), applies edits with the MTA's semantics, gives
// later backends the edited view, and translates the edits of a backend
// that saw the original list (parallel content mode) through that
// backend's own view into indexes valid for the current list.
//
// Index rules (milter-protocol.md §8.5; Postfix cleanup_milter.c): an
// insert index is a position in the complete list, hidden header included
// (0 = top, before the hidden Received header; 1 = after the first header
// of the list, which is the hidden one until something is inserted above
// it); a change index is the 1-based occurrence among the visible headers
// of that name (0 counts as 1); a change takes the edit's name (its case
// included) unless the list keeps names (Sendmail, the MeTA1 model); an
// empty change value deletes; a change of a missing occurrence with a
// value appends.

package pmult

import (
	"slices"
	"strings"
)

// Header is one header field: its name and the exact bytes after the
// colon, "\n" between folded lines (the Event rule).
type Header struct {
	Name, Value string
	// Hidden marks the MTA's own header above the list (Postfix's and
	// Sendmail's Received header): it counts in insert positions, not in
	// change occurrences, and backends never see it.
	Hidden bool
}

// HeaderList is a message's header list with the MTA's edit rules (see
// the file header). The zero value is an empty list with Postfix's rules.
type HeaderList struct {
	Fields []Header
	// KeepName: a change keeps the field's name and replaces its value
	// only (Sendmail, the MeTA1 model). Otherwise the edit's name replaces
	// the field's, its case included (Postfix rewrites the whole header).
	KeepName bool
}

// HeaderOp is what Apply did to a HeaderList.
type HeaderOp uint8

// Header operations.
const (
	HeaderNone     HeaderOp = iota // nothing: not a header edit, or a deletion of a missing header
	HeaderAppended                 // a field added at the end
	HeaderInserted                 // a field inserted at Pos
	HeaderChanged                  // the field at Pos got a new value
	HeaderDeleted                  // the field at Pos was removed
)

// HeaderChange says what Apply did: Op at position Pos of Fields (the
// new field's position for an addition, the old one for a deletion);
// Field is the field as it is now, or as it was for a deletion.
type HeaderChange struct {
	Op    HeaderOp
	Pos   int
	Field Header
}

// Nth returns the position in Fields of the n-th (1-based, 0 counts as 1)
// visible field called name (case-insensitive), or -1.
func (l *HeaderList) Nth(name string, n int) int {
	if n <= 0 {
		n = 1
	}
	for i := range l.Fields {
		if !l.Fields[i].Hidden && strings.EqualFold(l.Fields[i].Name, name) {
			n--
			if n == 0 {
				return i
			}
		}
	}
	return -1
}

// Count returns the number of visible fields called name.
func (l *HeaderList) Count(name string) int {
	c := 0
	for i := range l.Fields {
		if !l.Fields[i].Hidden && strings.EqualFold(l.Fields[i].Name, name) {
			c++
		}
	}
	return c
}

// Apply changes the list as the MTA would for a header edit (add, insert,
// change) and says what it did; other edits change nothing.
func (l *HeaderList) Apply(e Edit) HeaderChange {
	switch e.Kind {
	case EditAddHeader:
		f := Header{Name: e.Name, Value: e.Value}
		l.Fields = append(l.Fields, f)
		return HeaderChange{HeaderAppended, len(l.Fields) - 1, f}
	case EditInsertHeader:
		f := Header{Name: e.Name, Value: e.Value}
		pos := min(max(e.Index, 0), len(l.Fields))
		l.Fields = slices.Insert(l.Fields, pos, f)
		return HeaderChange{HeaderInserted, pos, f}
	case EditChangeHeader:
		i := l.Nth(e.Name, e.Index)
		switch {
		case i < 0 && e.Value != "":
			f := Header{Name: e.Name, Value: e.Value}
			l.Fields = append(l.Fields, f)
			return HeaderChange{HeaderAppended, len(l.Fields) - 1, f}
		case i < 0:
		case e.Value == "":
			f := l.Fields[i]
			l.Fields = slices.Delete(l.Fields, i, i+1)
			return HeaderChange{HeaderDeleted, i, f}
		default:
			if !l.KeepName {
				l.Fields[i].Name = e.Name
			}
			l.Fields[i].Value = e.Value
			return HeaderChange{HeaderChanged, i, l.Fields[i]}
		}
	}
	return HeaderChange{}
}

// hfield is a visible header as the model yields it to the engine.
type hfield struct{ name, value string }

type headerModel struct {
	list HeaderList // the complete list as the MTA has it now
	// ids name list's fields across lists: a field's position in the
	// original list (0 is the hidden header when there is one), or a
	// negative number for a header added by an edit.
	ids  []int
	orig []Header // the complete list as received, for parallel translation
	// noHidden: the MTA hides no header above the list (the zero value
	// models Postfix and Sendmail, whose own Received header is hidden).
	noHidden bool
	added    int // headers added so far (ids -1, -2, …)
}

func (m *headerModel) reset() {
	if cap(m.ids) == 0 {
		// Room for a few headers at once, instead of growing three
		// lists from one (kept for the next message).
		m.list.Fields = make([]Header, 0, 8)
		m.ids = make([]int, 0, 8)
		m.orig = make([]Header, 0, 8)
	}
	m.list.Fields = m.list.Fields[:0]
	m.ids = m.ids[:0]
	m.orig = m.orig[:0]
	m.added = 0
	if !m.noHidden {
		f := Header{Name: "Received", Hidden: true}
		m.list.Fields = append(m.list.Fields, f)
		m.ids = append(m.ids, 0)
		m.orig = append(m.orig, f)
	}
}

// received records a header as the MTA sent it.
func (m *headerModel) received(name, value string) {
	if len(m.orig) == 0 && !m.noHidden {
		m.reset()
	}
	f := Header{Name: name, Value: value}
	m.ids = append(m.ids, len(m.orig))
	m.orig = append(m.orig, f)
	m.list.Fields = append(m.list.Fields, f)
}

// newID returns the id of a header added by an edit.
func (m *headerModel) newID() int {
	m.added++
	return -m.added
}

// visible calls fn for every header a backend sees, in order.
func (m *headerModel) visible(fn func(f hfield) bool) {
	for _, f := range m.list.Fields {
		if !f.Hidden && !fn(hfield{f.Name, f.Value}) {
			return
		}
	}
}

// apply changes the model as the MTA would for edit e; an added header
// gets id.
func (m *headerModel) apply(e Edit, id int) {
	if len(m.list.Fields) == 0 && !m.noHidden {
		m.reset()
	}
	switch c := m.list.Apply(e); c.Op {
	case HeaderAppended, HeaderInserted:
		m.ids = slices.Insert(m.ids, c.Pos, id)
	case HeaderDeleted:
		m.ids = slices.Delete(m.ids, c.Pos, c.Pos+1)
	}
}

func (m *headerModel) posOfID(id int) int {
	return slices.Index(m.ids, id)
}

// view returns a copy of the original list: what a backend that saw the
// original message works against.
func (m *headerModel) view() *headerModel {
	v := &headerModel{noHidden: m.noHidden}
	if len(m.orig) == 0 && !m.noHidden {
		v.reset()
		return v
	}
	v.list.Fields = slices.Clone(m.orig)
	v.orig = m.orig
	v.ids = make([]int, len(m.orig))
	for i := range v.ids {
		v.ids[i] = i
	}
	return v
}

// translate turns a header edit that a backend made against its own view
// v (the original list plus that backend's earlier edits) into one valid
// for the current list. ok is false when the edit has nothing left to act
// on (its header was deleted by an earlier backend).
func (m *headerModel) translate(v *headerModel, e Edit) (Edit, bool) {
	switch e.Kind {
	case EditInsertHeader:
		// Anchor on the header the new one goes above in the backend's
		// view, or the first one after it that still exists.
		for pos := max(e.Index, 0); pos < len(v.ids); pos++ {
			if p := m.posOfID(v.ids[pos]); p >= 0 {
				e.Index = p
				return e, true
			}
		}
		e.Index = len(m.list.Fields) // past the end: append
		return e, true
	case EditChangeHeader:
		vi := v.list.Nth(e.Name, e.Index)
		if vi < 0 { // not in its view: the MTA would append
			if e.Value == "" {
				return e, false
			}
			e.Index = m.list.Count(e.Name) + 1
			return e, true
		}
		p := m.posOfID(v.ids[vi])
		if p < 0 {
			return e, false // deleted by an earlier backend
		}
		before := HeaderList{Fields: m.list.Fields[:p]}
		e.Index = before.Count(e.Name) + 1
		return e, true
	}
	return e, true
}
