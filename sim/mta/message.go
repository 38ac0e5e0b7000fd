// message.go: a message as the simulator keeps it (envelope, header list,
// body), the milter's edits applied to it as an MTA applies them, and the
// report printed for it (verdict, envelope, header diff, resulting message).
//
// Header values keep their exact bytes after the colon (leading space
// included) with "\n" between folded lines, as pmult.Event carries them;
// the body keeps CRLF line ends, as MTAs send it to milters.

package mtasim

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// Header is one header field.
type Header struct {
	Name, Value string
}

// String formats the field as "Name: value" with CRLF between folded lines.
func (h Header) String() string {
	return h.Name + ":" + strings.ReplaceAll(h.Value, "\n", "\r\n")
}

// Rcpt is one envelope recipient.
type Rcpt struct {
	Addr string // as given, angle brackets included ("<b@example.com>")
	Args []string
}

// Message is one message of a session.
type Message struct {
	From     string // as given in MAIL FROM, angle brackets included
	FromArgs []string
	Rcpts    []Rcpt
	Headers  []Header
	Body     []byte
}

// Clone returns a deep copy.
func (m *Message) Clone() *Message {
	c := *m
	c.FromArgs = append([]string(nil), m.FromArgs...)
	c.Rcpts = make([]Rcpt, len(m.Rcpts))
	for i, r := range m.Rcpts {
		c.Rcpts[i] = Rcpt{Addr: r.Addr, Args: append([]string(nil), r.Args...)}
	}
	c.Headers = append([]Header(nil), m.Headers...)
	c.Body = append([]byte(nil), m.Body...)
	return &c
}

// ParseContent splits RFC 5322 content (LF or CRLF line ends, no dot
// stuffing) into header fields and body. A first line that is not a header
// field (no colon, or a space in the name) starts the body, as Sendmail
// does with a message lacking headers.
func ParseContent(data []byte) ([]Header, []byte) {
	var hs []Header
	rest := data
	for len(rest) > 0 {
		line, next, _ := bytes.Cut(rest, []byte("\n"))
		l := strings.TrimSuffix(string(line), "\r")
		if l == "" {
			return hs, crlf(next)
		}
		if (l[0] == ' ' || l[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1].Value += "\n" + l
			rest = next
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			break
		}
		hs = append(hs, Header{Name: name, Value: value})
		rest = next
	}
	return hs, crlf(rest)
}

// crlf converts bare LF line ends to CRLF.
func crlf(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/32)
	for len(b) > 0 {
		line, rest, found := bytes.Cut(b, []byte("\n"))
		out.Write(bytes.TrimSuffix(line, []byte("\r")))
		if found {
			out.WriteString("\r\n")
		}
		b = rest
	}
	return out.Bytes()
}

// Content returns the message as RFC 5322 text with CRLF line ends.
func (m *Message) Content() []byte {
	var b bytes.Buffer
	for _, h := range m.Headers {
		b.WriteString(h.String())
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(m.Body)
	return b.Bytes()
}

// Apply applies milter edits as Sendmail does (pmult.HeaderList with
// KeepName, no hidden header): add appends, insert puts the field at the
// index (0 = top), change replaces the value of the n-th (1-based; 0
// counts as 1) field of that name or deletes it when the value is empty,
// and adds it when there is no such field; recipients are added
// and deleted (compared without angle brackets, case-insensitively),
// change-from replaces the sender, and replace-body the body. It returns
// the quarantine reason, if any.
func (m *Message) Apply(edits []pmult.Edit) (quarantine string) {
	hl := pmult.HeaderList{Fields: make([]pmult.Header, len(m.Headers)), KeepName: true}
	for i, h := range m.Headers {
		hl.Fields[i] = pmult.Header{Name: h.Name, Value: h.Value}
	}
	edited := false
	for _, e := range edits {
		switch e.Kind {
		case pmult.EditAddHeader, pmult.EditInsertHeader, pmult.EditChangeHeader:
			hl.Apply(e)
			edited = true
		case pmult.EditAddRcpt, pmult.EditAddRcptPar:
			r := Rcpt{Addr: e.Addr}
			if e.Args != "" {
				r.Args = strings.Fields(e.Args)
			}
			m.Rcpts = append(m.Rcpts, r)
		case pmult.EditDelRcpt:
			for i := 0; i < len(m.Rcpts); i++ {
				if sameAddr(m.Rcpts[i].Addr, e.Addr) {
					m.Rcpts = append(m.Rcpts[:i], m.Rcpts[i+1:]...)
					i--
				}
			}
		case pmult.EditChangeFrom:
			m.From = e.Addr
			m.FromArgs = nil
			if e.Args != "" {
				m.FromArgs = strings.Fields(e.Args)
			}
		case pmult.EditReplaceBody:
			m.Body = e.Body
		case pmult.EditQuarantine:
			quarantine = e.Value
		}
	}
	if edited {
		m.Headers = make([]Header, len(hl.Fields))
		for i, f := range hl.Fields {
			m.Headers[i] = Header{f.Name, f.Value}
		}
	}
	return quarantine
}

// sameAddr compares addresses without angle brackets, case-insensitively.
func sameAddr(a, b string) bool {
	return strings.EqualFold(macros.StripBrackets(a), macros.StripBrackets(b))
}

// HeaderDiff returns the changes from old to new header lists as lines
// "- Name: value" and "+ Name: value" (a unified diff without context),
// computed on whole fields by longest common subsequence.
func HeaderDiff(old, new []Header) []string {
	n, m := len(old), len(new)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if old[i] == new[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	show := func(sign string, h Header) {
		out = append(out, sign+" "+h.Name+":"+strings.ReplaceAll(h.Value, "\n", "\n  "))
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && old[i] == new[j]:
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			show("-", old[i])
			i++
		default:
			show("+", new[j])
			j++
		}
	}
	return out
}

// Result is the outcome of one message.
type Result struct {
	N        int      // message number in the session, from 1
	Original *Message // as the client sent it (accepted recipients only)
	Final    *Message // with the milter's edits applied
	Edits    []pmult.Edit
	Verdict  pmult.Verdict // the milter's verdict for the message
	Reply    Reply         // the reply to the end of data (or the command that ended it)
	// Quarantine is the milter's quarantine reason ("" when not held).
	Quarantine string
	// Stage is the event at which the milter decided (EOM normally).
	Stage pmult.Kind
}

// Delivered reports whether the message would be delivered (accepted and
// neither discarded nor held).
func (r *Result) Delivered() bool {
	return r.Reply.Code/100 == 2 && r.Verdict != pmult.Discard && r.Quarantine == ""
}

func (r *Result) outcome() string {
	switch {
	case r.Reply.Code/100 != 2:
		return r.Verdict.String()
	case r.Verdict == pmult.Discard:
		return "discard"
	case r.Quarantine != "":
		return "quarantine"
	case r.Verdict == pmult.Accept:
		return "accept"
	}
	return "continue"
}

// Print writes the report of one message: verdict and reply, envelope
// changes, the header diff, body replacement, and (with full) the
// resulting message.
func (r *Result) Print(w io.Writer, full bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "=== message %d: %s (at %s)\n", r.N, r.outcome(), r.Stage)
	fmt.Fprintf(&b, "reply: %s\n", strings.ReplaceAll(r.Reply.String(), "\r\n", "\n       "))
	if r.Quarantine != "" {
		fmt.Fprintf(&b, "quarantine: %s\n", r.Quarantine)
	}
	o, f := r.Original, r.Final
	if f == nil {
		f = o
	}
	from := func(m *Message) string { return strings.TrimSpace(m.From + " " + strings.Join(m.FromArgs, " ")) }
	if from(o) != from(f) {
		fmt.Fprintf(&b, "from: %s -> %s\n", from(o), from(f))
	} else {
		fmt.Fprintf(&b, "from: %s\n", from(o))
	}
	for _, rc := range f.Rcpts {
		sign := " "
		if !hasRcpt(o.Rcpts, rc.Addr) {
			sign = "+"
		}
		fmt.Fprintf(&b, "rcpt:%s%s\n", sign, strings.TrimSpace(rc.Addr+" "+strings.Join(rc.Args, " ")))
	}
	for _, rc := range o.Rcpts {
		if !hasRcpt(f.Rcpts, rc.Addr) {
			fmt.Fprintf(&b, "rcpt:-%s\n", rc.Addr)
		}
	}
	if d := HeaderDiff(o.Headers, f.Headers); len(d) > 0 {
		b.WriteString("headers:\n")
		for _, l := range d {
			b.WriteString("  " + l + "\n")
		}
	}
	if !bytes.Equal(o.Body, f.Body) {
		fmt.Fprintf(&b, "body: replaced (%d -> %d bytes)\n", len(o.Body), len(f.Body))
	}
	if full {
		b.WriteString("--- resulting message\n")
		b.WriteString(strings.ReplaceAll(string(f.Content()), "\r\n", "\n"))
		if len(f.Body) > 0 && !bytes.HasSuffix(f.Body, []byte("\n")) {
			b.WriteString("\n")
		}
		b.WriteString("---\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func hasRcpt(rs []Rcpt, a string) bool {
	for _, r := range rs {
		if sameAddr(r.Addr, a) {
			return true
		}
	}
	return false
}

// EditLines describes the milter's edits of the message, in the order it
// sent them, one line each: "edit: add header Name: value", "edit: insert
// header at N Name: value", "edit: change header Name[i]: value", "edit:
// delete header Name[i]", "edit: change sender <a> args", "edit: add
// recipient <a> args", "edit: delete recipient <a>", "edit: replace body
// (N bytes)", "edit: quarantine: reason". Folded values show their line
// breaks as "\n  ".
func (r *Result) EditLines() []string {
	var out []string
	val := func(v string) string { return strings.ReplaceAll(v, "\n", "\n  ") }
	addr := func(a, args string) string {
		return strings.TrimSpace("<" + macros.StripBrackets(a) + "> " + args)
	}
	for _, e := range r.Edits {
		var l string
		switch e.Kind {
		case pmult.EditAddHeader:
			l = fmt.Sprintf("add header %s:%s", e.Name, val(e.Value))
		case pmult.EditInsertHeader:
			l = fmt.Sprintf("insert header at %d %s:%s", e.Index, e.Name, val(e.Value))
		case pmult.EditChangeHeader:
			if e.Value == "" {
				l = fmt.Sprintf("delete header %s[%d]", e.Name, e.Index)
			} else {
				l = fmt.Sprintf("change header %s[%d]:%s", e.Name, e.Index, val(e.Value))
			}
		case pmult.EditChangeFrom:
			l = "change sender " + addr(e.Addr, e.Args)
		case pmult.EditAddRcpt, pmult.EditAddRcptPar:
			l = "add recipient " + addr(e.Addr, e.Args)
		case pmult.EditDelRcpt:
			l = "delete recipient " + addr(e.Addr, "")
		case pmult.EditReplaceBody:
			l = fmt.Sprintf("replace body (%d bytes)", len(e.Body))
		case pmult.EditQuarantine:
			l = "quarantine: " + e.Value
		default:
			l = e.Kind.String()
		}
		out = append(out, "edit: "+l)
	}
	return out
}
