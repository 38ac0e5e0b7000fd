// data.go: the DATA stage: the dot-encoded message read line by line
// (dot-unstuffing, the end-of-data line, the bare-LF policy) and split
// into the engine's header events (pmult.HeaderList values: the exact
// bytes after the colon, "\n" between folded lines) and body chunks.
//
// Why not a library reader: net/textproto's DotReader rewrites CRLF to LF
// and ends the data at "\n.\n" (the SMTP smuggling hole Postfix closed
// with smtpd_forbid_bare_newline), and go-smtp keeps its reader
// unexported. The end-of-data line here is only ".\r\n" after a CRLF,
// as Postfix's "normalize" requires.

package smtp

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// BareLF is the policy for lines ending in LF alone.
type BareLF uint8

// Bare-LF policies (Postfix smtpd_forbid_bare_newline).
const (
	// BareLFNormalize takes a bare LF as CRLF (Postfix 3.9's default
	// "normalize"); the end of data must still be CRLF "." CRLF.
	BareLFNormalize BareLF = iota
	// BareLFReject refuses a command or message that has one, with
	// 550 5.5.2 (Postfix "reject").
	BareLFReject
)

// errDataEOF is returned by dataReader.next at the end-of-data line.
var errDataEOF = errors.New("end of data")

// dataReader reads the dot-encoded message from br.
type dataReader struct {
	br        *bufio.Reader
	lineStart bool // the next byte starts a line
	afterCRLF bool // the previous line ended in CRLF (or data just began)
	prevCR    bool // the previous fragment of this line ended in CR
	bareLF    bool // a bare LF was seen
	buf       []byte
}

func (d *dataReader) reset(br *bufio.Reader) {
	*d = dataReader{br: br, lineStart: true, afterCRLF: true, buf: d.buf[:0]}
}

// next returns the next piece of content: a whole line with its CRLF
// (eol true, bare LF normalised to CRLF), or a piece of a line longer
// than the reader's buffer (eol false). At the end-of-data line it
// returns errDataEOF. The slice is valid until the next call.
func (d *dataReader) next() (line []byte, eol bool, err error) {
	frag, err := d.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		if d.lineStart && len(frag) > 0 && frag[0] == '.' {
			frag = frag[1:]
		}
		d.lineStart = false
		d.prevCR = len(frag) > 0 && frag[len(frag)-1] == '\r'
		return frag, false, nil
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, false, err
	}
	start, prevCR := d.lineStart, d.prevCR
	d.lineStart, d.prevCR = true, false
	crlf := len(frag) >= 2 && frag[len(frag)-2] == '\r' || len(frag) == 1 && prevCR
	if start {
		if d.afterCRLF && len(frag) == 3 && frag[0] == '.' && frag[1] == '\r' {
			return nil, true, errDataEOF
		}
		if frag[0] == '.' {
			frag = frag[1:]
		}
	}
	d.afterCRLF = crlf
	if crlf {
		return frag, true, nil
	}
	d.bareLF = true
	d.buf = append(append(d.buf[:0], frag[:len(frag)-1]...), '\r', '\n')
	return d.buf, true, nil
}

// splitter turns content lines into header events and body bytes.
type splitter struct {
	max     int  // largest header (folded lines included); 0: no limit
	inBody  bool // the header section is over
	cur     []byte
	tooLong bool // a header was longer than max
	partial []byte
}

func (sp *splitter) reset() {
	sp.inBody, sp.tooLong = false, false
	sp.cur, sp.partial = sp.cur[:0], sp.partial[:0]
}

// handlers the splitter calls.
type splitOut interface {
	header(name, value string)
	eoh()
	body(p []byte)
}

// write takes one piece from dataReader.next.
func (sp *splitter) write(p []byte, eol bool, out splitOut) {
	if sp.inBody {
		out.body(p)
		return
	}
	if !eol {
		sp.partial = append(sp.partial, p...)
		if sp.max > 0 && len(sp.partial) > sp.max {
			sp.tooLong = true
			sp.partial = sp.partial[:0]
		}
		return
	}
	line := p
	if len(sp.partial) > 0 {
		sp.partial = append(sp.partial, p...)
		line = sp.partial
	}
	sp.line(line, out)
	sp.partial = sp.partial[:0]
}

func (sp *splitter) line(line []byte, out splitOut) {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && len(sp.cur) > 0 {
		sp.cur = append(sp.cur, line...)
		if sp.max > 0 && len(sp.cur) > sp.max {
			sp.tooLong = true
			sp.cur = sp.cur[:0]
		}
		return
	}
	sp.flush(out)
	if len(line) == 2 { // CRLF: the end of the header section
		sp.inBody = true
		out.eoh()
		return
	}
	if headerName(line) > 0 {
		sp.cur = append(sp.cur[:0], line...)
		return
	}
	// Not a header: the body starts here (no blank line), as in Postfix.
	sp.inBody = true
	out.eoh()
	out.body(line)
}

// finish ends the message: a pending header, and EOH if the message
// had no body.
func (sp *splitter) finish(out splitOut) {
	if sp.inBody {
		return
	}
	if len(sp.partial) > 0 {
		sp.line(sp.partial, out)
		sp.partial = sp.partial[:0]
		if sp.inBody {
			return
		}
	}
	sp.flush(out)
	sp.inBody = true
	out.eoh()
}

func (sp *splitter) flush(out splitOut) {
	if len(sp.cur) == 0 {
		return
	}
	n := headerName(sp.cur)
	name := string(trimBlanks(sp.cur[:n]))
	v := sp.cur[n+1:]
	v = v[:len(v)-2] // the final CRLF
	out.header(name, engineValue(v))
	sp.cur = sp.cur[:0]
}

// headerName returns the position of the colon ending a header name at
// the start of line (printable ASCII but colon, blanks allowed before the
// colon, as in Postfix's is_header), or 0.
func headerName(line []byte) int {
	i := 0
	for i < len(line) && line[i] > 32 && line[i] < 127 && line[i] != ':' {
		i++
	}
	if i == 0 {
		return 0
	}
	j := i
	for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
		j++
	}
	if j < len(line) && line[j] == ':' {
		return j
	}
	return 0
}

func trimBlanks(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// engineValue turns the raw bytes after a colon (CRLF between folded
// lines) into an engine header value ("\n" between them).
func engineValue(v []byte) string {
	var b strings.Builder
	b.Grow(len(v))
	for i, c := range v {
		if c == '\r' && i+1 < len(v) && v[i+1] == '\n' {
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// appendWireValue appends an engine header value as message text (CRLF
// between folded lines; a lone LF becomes CRLF, an existing CRLF stays).
func appendWireValue(dst []byte, v string) []byte { return appendLFasCRLF(dst, v) }

// appendCRLF appends a replacement body with CRLF line ends (milters
// usually send LF; an existing CRLF stays), ending with a line end.
func appendCRLF(dst, b []byte) []byte {
	dst = appendLFasCRLF(dst, b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// appendLFasCRLF appends v with each lone LF as CRLF.
func appendLFasCRLF[T string | []byte](dst []byte, v T) []byte {
	for i := 0; i < len(v); i++ {
		if v[i] == '\n' && (i == 0 || v[i-1] != '\r') {
			dst = append(dst, '\r')
		}
		dst = append(dst, v[i])
	}
	return dst
}
