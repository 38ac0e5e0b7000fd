// split.go: the data-stage splitter. MeTA1 hands the message over in one
// data stage, as raw chunks of CRLF text; milter backends want header,
// end-of-headers and body events. The splitter follows the header block
// line by line across chunk boundaries (a line, a folded header, or the
// blank line ending the header block may be split anywhere, CR and LF
// included), accepts bare LF line ends, emits each header when the next
// line shows it is complete, and passes the body through in the chunks it
// came in, with bare LFs turned into CRLF (as milter body chunks are).
//
// Header rules: "Name: value" with the value kept exactly (leading space
// included), "\n" between folded lines, CRs dropped; a header block ends
// at the first empty line, or at the first line that is neither a header
// nor a continuation (that line then starts the body, as Sendmail does).
// A message that ends inside its header block has no body. A single
// header longer than max is not passed on: the splitter emits an event
// of KindNone instead (the session rejects the message) and skips it.

package meta1

import (
	"bytes"

	"github.com/mailmux/mailmux/pmult"
)

type splitter struct {
	max      int
	inBody   bool
	line     []byte // the incomplete last line (header phase)
	hdr      []byte // the header being collected: "Name:value\nfold…"
	has      bool   // hdr holds a header
	skipLine bool   // dropping the rest of an oversized line
	skipHdr  bool   // dropping the continuation lines of an oversized header
	lastCR   bool   // body phase: the previous chunk ended with CR
	eoh      bool   // EOH emitted
}

func (p *splitter) reset() {
	*p = splitter{max: p.max, line: p.line[:0], hdr: p.hdr[:0]}
}

// write consumes one chunk.
func (p *splitter) write(chunk []byte, emit func(*pmult.Event)) {
	for !p.inBody && len(chunk) > 0 {
		nl := bytes.IndexByte(chunk, '\n')
		if nl < 0 {
			p.appendLine(chunk, emit)
			return
		}
		p.appendLine(chunk[:nl], emit)
		chunk = chunk[nl+1:]
		if p.skipLine {
			p.skipLine = false
			p.line = p.line[:0]
			continue
		}
		line := p.line
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		p.headerLine(line, true, emit)
		p.line = p.line[:0]
		if p.inBody && !p.eoh {
			p.endHeaders(emit)
		}
	}
	if len(chunk) > 0 {
		p.body(chunk, emit)
	}
}

// tooLong drops the header being collected and tells the session.
func (p *splitter) tooLong(emit func(*pmult.Event)) {
	p.has = false
	p.hdr = p.hdr[:0]
	p.skipHdr = true
	emit(&pmult.Event{Kind: pmult.KindNone})
}

func (p *splitter) appendLine(b []byte, emit func(*pmult.Event)) {
	if p.skipLine {
		return
	}
	n := len(p.line) + len(b)
	var first byte
	if len(p.line) > 0 {
		first = p.line[0]
	} else if len(b) > 0 {
		first = b[0]
	}
	cont := first == ' ' || first == '\t'
	if cont && p.has {
		n += len(p.hdr) + 1
	}
	if n <= p.max {
		p.line = append(p.line, b...)
		return
	}
	p.skipLine = true
	p.line = p.line[:0]
	switch {
	case cont && p.has: // the header being collected grew too long
		p.tooLong(emit)
	case cont && p.skipHdr: // more of a header already dropped
	default: // a new line too long on its own
		if !cont {
			p.flush(emit)
		}
		p.tooLong(emit)
	}
}

// headerLine handles one complete line of the header phase (no line end).
// When it is the first body line, full tells whether it ended with a line
// end (to be restored in the body).
func (p *splitter) headerLine(line []byte, full bool, emit func(*pmult.Event)) {
	if p.skipHdr {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return // the dropped header's continuation
		}
		p.skipHdr = false
	}
	switch {
	case len(line) == 0:
		p.flush(emit)
		p.inBody = true
	case (line[0] == ' ' || line[0] == '\t') && p.has:
		p.hdr = append(p.hdr, '\n')
		p.hdr = append(p.hdr, line...)
	case isHeaderStart(line):
		p.flush(emit)
		p.hdr = append(p.hdr[:0], line...)
		p.has = true
	default:
		// Not a header: the body starts here.
		p.flush(emit)
		p.inBody = true
		p.endHeaders(emit)
		b := append([]byte(nil), line...)
		if full {
			b = append(b, '\r', '\n')
		}
		p.body(b, emit)
	}
}

// isHeaderStart reports whether line opens a header: a non-empty field
// name of printable characters other than ':' (trailing blanks allowed),
// then ':'.
func isHeaderStart(line []byte) bool {
	c := bytes.IndexByte(line, ':')
	if c <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:c], " \t")
	if len(name) == 0 {
		return false
	}
	for _, b := range name {
		if b <= ' ' || b >= 0x7f {
			return false
		}
	}
	return true
}

func (p *splitter) flush(emit func(*pmult.Event)) {
	if !p.has {
		return
	}
	p.has = false
	c := bytes.IndexByte(p.hdr, ':')
	name := string(bytes.TrimRight(p.hdr[:c], " \t"))
	emit(&pmult.Event{Kind: pmult.KindHeader, Name: name, Value: string(p.hdr[c+1:])})
	p.hdr = p.hdr[:0]
}

func (p *splitter) endHeaders(emit func(*pmult.Event)) {
	p.eoh = true
	emit(&pmult.Event{Kind: pmult.KindEOH})
}

// body passes a body chunk on, turning bare LFs into CRLF. The chunk is
// passed as it is when it has none (no copy).
func (p *splitter) body(b []byte, emit func(*pmult.Event)) {
	if len(b) == 0 {
		return
	}
	wasCR := p.lastCR
	p.lastCR = b[len(b)-1] == '\r'
	bare := false
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		if (i == 0 && !wasCR) || (i > 0 && b[i-1] != '\r') {
			bare = true
			break
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if !bare {
		emit(&pmult.Event{Kind: pmult.KindBody, Chunk: b})
		return
	}
	out := make([]byte, 0, len(b)+len(b)/16+2)
	prev := wasCR
	for _, c := range b {
		if c == '\n' && !prev {
			out = append(out, '\r')
		}
		out = append(out, c)
		prev = c == '\r'
	}
	emit(&pmult.Event{Kind: pmult.KindBody, Chunk: out})
}

// finish ends the message (the dot): a last line without line end, the
// last header, EOH when not sent yet.
func (p *splitter) finish(emit func(*pmult.Event)) {
	if !p.inBody {
		if len(p.line) > 0 && !p.skipLine {
			line := p.line
			if n := len(line); line[n-1] == '\r' {
				line = line[:n-1]
			}
			p.headerLine(line, false, emit)
			p.line = p.line[:0]
		}
		p.flush(emit)
		p.inBody = true
	}
	if !p.eoh {
		p.endHeaders(emit)
	}
}
