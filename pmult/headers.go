// headers.go: the header model. It holds the header list as the backends
// see it (the MTA's own hidden Received header excluded), applies edits with
// the MTA's semantics, gives later backends the edited view, and translates
// edits made against the original list (parallel content mode) into indexes
// valid for the current list.
//
// Index rules (milter-protocol.md §8.5): an insert index counts the MTA's
// own hidden Received header at the top (0 = before it, 1 = right after it,
// i.e. before the first visible header); a change index is the 1-based
// occurrence among headers of that name (0 counts as 1); an empty change
// value deletes; a change of a missing occurrence with a value appends.

package pmult

import "strings"

type hfield struct {
	name, value string
	id          int // position in the original list, or -1 for added headers
}

type headerModel struct {
	list []hfield
	orig []hfield // the list as received, for parallel translation
	// noHidden: the MTA hides no header above the list (the zero value
	// models Postfix and Sendmail, whose own Received header is hidden).
	noHidden bool
}

// hidden is the number of headers the MTA hides above the list.
func (m *headerModel) hidden() int {
	if m.noHidden {
		return 0
	}
	return 1
}

func (m *headerModel) reset() {
	m.list = m.list[:0]
	m.orig = m.orig[:0]
}

// received records a header as the MTA sent it.
func (m *headerModel) received(name, value string) {
	f := hfield{name: name, value: value, id: len(m.orig)}
	m.orig = append(m.orig, f)
	m.list = append(m.list, f)
}

// nth returns the position in l of the n-th (1-based, 0 as 1) header
// called name, or -1.
func nth(l []hfield, name string, n int) int {
	if n <= 0 {
		n = 1
	}
	for i := range l {
		if strings.EqualFold(l[i].name, name) {
			n--
			if n == 0 {
				return i
			}
		}
	}
	return -1
}

func count(l []hfield, name string) int {
	c := 0
	for i := range l {
		if strings.EqualFold(l[i].name, name) {
			c++
		}
	}
	return c
}

// apply changes the model as the MTA would for edit e.
func (m *headerModel) apply(e Edit) {
	switch e.Kind {
	case EditAddHeader:
		m.list = append(m.list, hfield{name: e.Name, value: e.Value, id: -1})
	case EditInsertHeader:
		pos := e.Index - m.hidden() // the hidden Received header is position 0
		if pos < 0 {
			pos = 0
		}
		if pos > len(m.list) {
			pos = len(m.list)
		}
		m.list = append(m.list, hfield{})
		copy(m.list[pos+1:], m.list[pos:])
		m.list[pos] = hfield{name: e.Name, value: e.Value, id: -1}
	case EditChangeHeader:
		i := nth(m.list, e.Name, e.Index)
		switch {
		case i < 0 && e.Value != "":
			m.list = append(m.list, hfield{name: e.Name, value: e.Value, id: -1})
		case i < 0:
		case e.Value == "":
			m.list = append(m.list[:i], m.list[i+1:]...)
		default:
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

// translate turns a header edit made against the original list into one
// valid for the current list. ok is false when the edit has nothing left
// to act on (its header was deleted by an earlier backend).
func (m *headerModel) translate(e Edit) (Edit, bool) {
	switch e.Kind {
	case EditInsertHeader:
		if e.Index <= 0 {
			return e, true // before the MTA's hidden header: top of the list
		}
		pos := e.Index - m.hidden()
		// Anchor on the first original header at or after pos that survives.
		for ; pos < len(m.orig); pos++ {
			if p := m.posOfID(m.orig[pos].id); p >= 0 {
				e.Index = p + m.hidden()
				return e, true
			}
		}
		e.Index = len(m.list) + m.hidden() // past the end: append
		return e, true
	case EditChangeHeader:
		oi := nth(m.orig, e.Name, e.Index)
		if oi < 0 { // not in the original: the MTA would append
			if e.Value == "" {
				return e, false
			}
			e.Index = count(m.list, e.Name) + 1
			return e, true
		}
		p := m.posOfID(m.orig[oi].id)
		if p < 0 {
			return e, false // deleted by an earlier backend
		}
		e.Index = count(m.list[:p], e.Name) + 1
		return e, true
	}
	return e, true
}
