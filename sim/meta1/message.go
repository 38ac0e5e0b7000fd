// message.go: what smtps does with a pmilter's modifications: apply the
// header modifications (positional, in order) and recipient changes to its
// copy of the transaction, or take a replacement message as a whole.

package meta1sim

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
	"github.com/mailmux/mailmux/macros"
)

// Header is one header of a message: the name and the exact bytes after
// the colon (CRLF between folded lines).
type Header struct{ Name, Value string }

// SplitMessage splits raw message text into headers and body (CRLF or LF
// line ends; the body is returned as it is).
func SplitMessage(msg []byte) ([]Header, []byte) {
	var hs []Header
	for len(msg) > 0 {
		nl := bytes.IndexByte(msg, '\n')
		if nl < 0 {
			nl = len(msg)
		}
		line := strings.TrimSuffix(string(msg[:nl]), "\r")
		rest := msg[min(nl+1, len(msg)):]
		if line == "" {
			return hs, rest
		}
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1].Value += "\r\n" + line
		} else if name, val, ok := strings.Cut(line, ":"); ok {
			hs = append(hs, Header{Name: strings.TrimRight(name, " \t"), Value: val})
		} else {
			return hs, msg
		}
		msg = rest
	}
	return hs, nil
}

// JoinMessage builds message text from headers and body.
func JoinMessage(hs []Header, body []byte) []byte {
	var b bytes.Buffer
	for _, h := range hs {
		b.WriteString(h.Name)
		b.WriteByte(':')
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// Transaction is smtps's copy of a transaction, to which modifications
// are applied.
type Transaction struct {
	Rcpts   []string // as given ("<b@example.com>")
	Message []byte
}

// Apply carries out the modifications of a dot reply, as modelled.
func (t *Transaction) Apply(r Reply) error {
	for _, d := range r.RcptDel {
		found := false
		for i, a := range t.Rcpts {
			if (d.Index != ^uint32(0) && uint32(i) == d.Index) || strings.EqualFold(macros.StripBrackets(a), macros.StripBrackets(d.Addr)) {
				t.Rcpts = append(t.Rcpts[:i], t.Rcpts[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("delete of unknown recipient %q", d.Addr)
		}
	}
	for _, a := range r.RcptAdd {
		t.Rcpts = append(t.Rcpts, a.Addr)
	}
	if r.Replacement != nil {
		t.Message = r.Replacement
		return nil
	}
	if len(r.HdrMods) == 0 {
		return nil
	}
	hs, body := SplitMessage(t.Message)
	for _, m := range r.HdrMods {
		p := int(m.Pos)
		switch m.Type {
		case pmilter.HdrAppend:
			hs = append(hs, Header{m.Name, m.Value})
		case pmilter.HdrInsert:
			if p > len(hs) {
				return fmt.Errorf("insert at %d of %d headers", p, len(hs))
			}
			hs = append(hs[:p], append([]Header{{m.Name, m.Value}}, hs[p:]...)...)
		case pmilter.HdrReplace:
			if p >= len(hs) {
				return fmt.Errorf("replace at %d of %d headers", p, len(hs))
			}
			hs[p].Value = m.Value
		case pmilter.HdrRemove:
			if p >= len(hs) {
				return fmt.Errorf("remove at %d of %d headers", p, len(hs))
			}
			hs = append(hs[:p], hs[p+1:]...)
		default:
			return fmt.Errorf("unknown header modification type %d", m.Type)
		}
	}
	t.Message = JoinMessage(hs, body)
	return nil
}
