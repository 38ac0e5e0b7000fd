// headers.go: the header model. It holds the complete header list as the
// MTA has it, the MTA's own hidden Received header included (marked
// hidden: backends never see it), applies edits with the MTA's semantics,
// gives later backends the edited view, and translates the edits of a
// backend that saw the original list (parallel content mode) through that
// backend's own view into indexes valid for the current list.
//
// Index rules (milter-protocol.md §8.5; Postfix cleanup_milter.c): an
// insert index is a position in the complete list, hidden header included
// (0 = top, before the hidden Received header; 1 = after the first header
// of the list, which is the hidden one until something is inserted above
// it); a change index is the 1-based occurrence among the visible headers
// of that name (0 counts as 1); a change takes the edit's name (its case
// included); an empty change value deletes; a change of a missing
// occurrence with a value appends.

package pmult

import "strings"

type hfield struct {
	name, value string
	// id names the field across lists: its position in the original list
	// (0 is the hidden header when there is one), or a negative number for
	// a header added by an edit.
	id     int
	hidden bool // the MTA's own header, not shown to backends
}

type headerModel struct {
	list []hfield // the complete list as the MTA has it now
	orig []hfield // the complete list as received, for parallel translation
	// noHidden: the MTA hides no header above the list (the zero value
	// models Postfix and Sendmail, whose own Received header is hidden).
	noHidden bool
	added    int // headers added so far (ids -1, -2, …)
}

func (m *headerModel) reset() {
	m.list = m.list[:0]
	m.orig = m.orig[:0]
	m.added = 0
	if !m.noHidden {
		f := hfield{name: "Received", id: 0, hidden: true}
		m.list = append(m.list, f)
		m.orig = append(m.orig, f)
	}
}

// received records a header as the MTA sent it.
func (m *headerModel) received(name, value string) {
	if len(m.orig) == 0 && !m.noHidden {
		m.reset()
	}
	f := hfield{name: name, value: value, id: len(m.orig)}
	m.orig = append(m.orig, f)
	m.list = append(m.list, f)
}

// newID returns the id of a header added by an edit.
func (m *headerModel) newID() int {
	m.added++
	return -m.added
}

// visible calls fn for every header a backend sees, in order.
func (m *headerModel) visible(fn func(f hfield) bool) {
	for _, f := range m.list {
		if !f.hidden && !fn(f) {
			return
		}
	}
}

// nth returns the position in l of the n-th (1-based, 0 as 1) visible
// header called name, or -1.
func nth(l []hfield, name string, n int) int {
	if n <= 0 {
		n = 1
	}
	for i := range l {
		if !l[i].hidden && strings.EqualFold(l[i].name, name) {
			n--
			if n == 0 {
				return i
			}
		}
	}
	return -1
}

// count returns the number of visible headers called name in l.
func count(l []hfield, name string) int {
	c := 0
	for i := range l {
		if !l[i].hidden && strings.EqualFold(l[i].name, name) {
			c++
		}
	}
	return c
}

// apply changes the model as the MTA would for edit e; an added header
// gets id.
func (m *headerModel) apply(e Edit, id int) {
	if len(m.list) == 0 && !m.noHidden {
		m.reset()
	}
	switch e.Kind {
	case EditAddHeader:
		m.list = append(m.list, hfield{name: e.Name, value: e.Value, id: id})
	case EditInsertHeader:
		pos := min(max(e.Index, 0), len(m.list))
		m.list = append(m.list, hfield{})
		copy(m.list[pos+1:], m.list[pos:])
		m.list[pos] = hfield{name: e.Name, value: e.Value, id: id}
	case EditChangeHeader:
		i := nth(m.list, e.Name, e.Index)
		switch {
		case i < 0 && e.Value != "":
			m.list = append(m.list, hfield{name: e.Name, value: e.Value, id: id})
		case i < 0:
		case e.Value == "":
			m.list = append(m.list[:i], m.list[i+1:]...)
		default:
			// Postfix rewrites the whole header: the new name's case wins.
			m.list[i].name = e.Name
			m.list[i].value = e.Value
		}
	}
}

func (m *headerModel) posOfID(id int) int {
	for i := range m.list {
		if m.list[i].id == id {
			return i
		}
	}
	return -1
}

// view returns a copy of the original list: what a backend that saw the
// original message works against.
func (m *headerModel) view() *headerModel {
	v := &headerModel{noHidden: m.noHidden}
	if len(m.orig) == 0 && !m.noHidden {
		v.reset()
		return v
	}
	v.list = append([]hfield(nil), m.orig...)
	v.orig = v.list
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
		for pos := max(e.Index, 0); pos < len(v.list); pos++ {
			if p := m.posOfID(v.list[pos].id); p >= 0 {
				e.Index = p
				return e, true
			}
		}
		e.Index = len(m.list) // past the end: append
		return e, true
	case EditChangeHeader:
		vi := nth(v.list, e.Name, e.Index)
		if vi < 0 { // not in its view: the MTA would append
			if e.Value == "" {
				return e, false
			}
			e.Index = count(m.list, e.Name) + 1
			return e, true
		}
		p := m.posOfID(v.list[vi].id)
		if p < 0 {
			return e, false // deleted by an earlier backend
		}
		e.Index = count(m.list[:p], e.Name) + 1
		return e, true
	}
	return e, true
}
