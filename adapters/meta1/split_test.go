// split_test.go: the data-stage splitter on folded headers, boundaries
// split across chunks (every split point), bare LF, no body, a huge header
// block, an oversized header; and a fuzz target checking that the events
// do not depend on how the message is chunked.

package meta1

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
)

// render runs the splitter over chunks and renders its events.
func render(max int, chunks ...[]byte) string {
	p := splitter{max: max}
	var b strings.Builder
	var body []byte
	emit := func(ev *pmult.Event) {
		switch ev.Kind {
		case pmult.KindHeader:
			fmt.Fprintf(&b, "H[%s|%s]", ev.Name, ev.Value)
		case pmult.KindEOH:
			b.WriteString("EOH")
		case pmult.KindBody:
			body = append(body, ev.Chunk...)
		case pmult.KindNone:
			b.WriteString("TOOLONG")
		}
	}
	for _, c := range chunks {
		p.write(c, emit)
	}
	p.finish(emit)
	fmt.Fprintf(&b, "B[%s]", body)
	return b.String()
}

var splitCases = []struct{ name, msg, want string }{
	{"simple", "A: 1\r\nB:2\r\n\r\nbody\r\n", "H[A| 1]H[B|2]EOHB[body\r\n]"},
	{"folded", "Subject: a\r\n\tb\r\n c\r\nX: y\r\n\r\nz", "H[Subject| a\n\tb\n c]H[X| y]EOHB[z]"},
	{"bare LF", "A: 1\nB: 2\n folded\n\nline1\nline2\r\nline3\n", "H[A| 1]H[B| 2\n folded]EOHB[line1\r\nline2\r\nline3\r\n]"},
	{"no body", "A: 1\r\nB: 2\r\n", "H[A| 1]H[B| 2]EOHB[]"},
	{"no body no final CRLF", "A: 1\r\nB: 2", "H[A| 1]H[B| 2]EOHB[]"},
	{"blank line only", "A: 1\r\n\r\n", "H[A| 1]EOHB[]"},
	{"empty message", "", "EOHB[]"},
	{"not a header starts body", "A: 1\r\nthis is body\r\nmore\r\n", "H[A| 1]EOHB[this is body\r\nmore\r\n]"},
	{"name with trailing blank", "Subject : x\r\n\r\n", "H[Subject| x]EOHB[]"},
	{"continuation first", " leading\r\n\r\n", "EOHB[ leading\r\n\r\n]"},
	{"CR only inside header", "A: x\ry\r\n\r\n", "H[A| x\ry]EOHB[]"},
}

func TestSplitter(t *testing.T) {
	for _, tc := range splitCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := render(1<<16, []byte(tc.msg)); got != tc.want {
				t.Fatalf("whole:\n got %q\nwant %q", got, tc.want)
			}
			// Every two-chunk split, then byte by byte.
			for i := 0; i <= len(tc.msg); i++ {
				if got := render(1<<16, []byte(tc.msg[:i]), []byte(tc.msg[i:])); got != tc.want {
					t.Fatalf("split at %d:\n got %q\nwant %q", i, got, tc.want)
				}
			}
			var bytesChunks [][]byte
			for i := 0; i < len(tc.msg); i++ {
				bytesChunks = append(bytesChunks, []byte{tc.msg[i]})
			}
			if got := render(1<<16, bytesChunks...); got != tc.want {
				t.Fatalf("byte by byte:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestSplitterHugeHeaderBlock(t *testing.T) {
	var msg bytes.Buffer
	var want strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&msg, "X-H%d: value %d\r\n continued\r\n", i, i)
		fmt.Fprintf(&want, "H[X-H%d| value %d\n continued]", i, i)
	}
	msg.WriteString("\r\nbody\r\n")
	want.WriteString("EOHB[body\r\n]")
	b := msg.Bytes()
	var chunks [][]byte
	for len(b) > 0 {
		n := min(len(b), 65536)
		chunks = append(chunks, b[:n])
		b = b[n:]
	}
	if got := render(1<<16, chunks...); got != want.String() {
		t.Fatalf("huge header block: %d bytes of events, want %d", len(got), want.Len())
	}
}

func TestSplitterTooLong(t *testing.T) {
	long := strings.Repeat("x", 100)
	cases := []struct{ msg, want string }{
		{"A: 1\r\nB: " + long + "\r\nC: 3\r\n\r\nb", "H[A| 1]TOOLONGH[C| 3]EOHB[b]"},
		{"A: 1\r\nB: 2\r\n " + long + "\r\n more\r\nC: 3\r\n\r\nb", "H[A| 1]TOOLONGH[C| 3]EOHB[b]"},
		{"A: " + long, "TOOLONGEOHB[]"},
	}
	for _, tc := range cases {
		for i := 0; i <= len(tc.msg); i += 7 {
			if got := render(64, []byte(tc.msg[:i]), []byte(tc.msg[i:])); got != tc.want {
				t.Fatalf("%q split at %d:\n got %q\nwant %q", tc.msg, i, got, tc.want)
			}
		}
	}
}

func FuzzSplitter(f *testing.F) {
	for _, tc := range splitCases {
		f.Add([]byte(tc.msg), uint16(3))
	}
	f.Fuzz(func(t *testing.T, msg []byte, cut uint16) {
		whole := render(64, msg)
		step := int(cut)%17 + 1
		var chunks [][]byte
		for b := msg; len(b) > 0; {
			n := min(step, len(b))
			chunks = append(chunks, b[:n])
			b = b[n:]
		}
		if got := render(64, chunks...); got != whole {
			t.Fatalf("chunks of %d:\n got %q\nwant %q", step, got, whole)
		}
	})
}
