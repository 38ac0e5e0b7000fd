// headers.go: a message's header list as the harness reads it from a
// delivered (Postfix) or queued (Sendmail) message.

package realpeer

import "strings"

// HeaderList is a header list in order; each value is raw: everything
// after the colon, continuation lines kept (joined by "\n").
type HeaderList [][2]string

// Value returns the first field with that name (case-insensitive),
// unfolded and trimmed, or "".
func (l HeaderList) Value(name string) string {
	for _, h := range l {
		if strings.EqualFold(h[0], name) {
			return unfold(h[1])
		}
	}
	return ""
}

// Values returns every field with that name (case-insensitive), in
// order, unfolded and trimmed.
func (l HeaderList) Values(name string) []string {
	var out []string
	for _, h := range l {
		if strings.EqualFold(h[0], name) {
			out = append(out, unfold(h[1]))
		}
	}
	return out
}

func unfold(v string) string { return strings.TrimSpace(strings.Join(strings.Fields(v), " ")) }
