package smtp

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// FuzzParseCommand: the command parser never panics, and what it accepts
// is well formed.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME", "rcpt to:<\"x y\"@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b",
		"MAIL FROM:<> RET=HDRS ENVID=x+2By AUTH=<a>", "XCLIENT ADDR=1.2.3.4 NAME=[UNAVAILABLE] LOGIN=a+40b", "EHLO x", "",
		"MAIL FROM:a@b", "RCPT TO:<a\\>b>", "X\x00Y", "MAIL FROM:<a@b>junk"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := parseCommand(line)
		if err == nil && strings.ToUpper(c.verb) != c.verb {
			t.Fatalf("verb %q not upper case", c.verb)
		}
		for _, prefix := range []string{"FROM:", "TO:"} {
			path, params, err := parsePath(c.arg, prefix)
			if err != nil {
				continue
			}
			if len(path) < 2 || path[0] != '<' || path[len(path)-1] != '>' {
				t.Fatalf("path %q not bracketed", path)
			}
			for _, p := range params {
				if p == "" || strings.ContainsAny(p, " \t") {
					t.Fatalf("param %q", p)
				}
			}
			mailOptions(params)
			rcptOptions(params)
		}
		attrs(c.arg, xclientAttrs)
		attrs(c.arg, xforwardAttrs)
	})
}

type collect struct {
	hdrs  []string
	eohs  int
	bodyB []byte
}

func (c *collect) header(name, value string) { c.hdrs = append(c.hdrs, name+":"+value) }
func (c *collect) eoh()                      { c.eohs++ }
func (c *collect) body(p []byte)             { c.bodyB = append(c.bodyB, p...) }

// readAll runs the data reader and splitter over in.
func readAll(in []byte, buf int) (*collect, []byte, error) {
	var d dataReader
	d.reset(bufio.NewReaderSize(bytes.NewReader(in), buf))
	var sp splitter
	sp.max = 1 << 20
	out := &collect{}
	var content []byte
	for {
		p, eol, err := d.next()
		if err == errDataEOF {
			break
		}
		if err != nil {
			return out, content, err
		}
		content = append(content, p...)
		sp.write(p, eol, out)
	}
	sp.finish(out)
	return out, content, nil
}

// FuzzDataReader: any input ends (no panic); dot-stuffed CRLF lines come
// back exactly; a header section is split into headers whose wire form
// is the original text.
func FuzzDataReader(f *testing.F) {
	f.Add([]byte("Subject: a\r\n b\r\n\r\nbody\r\n.dot\r\n"), uint8(0))
	f.Add([]byte("A: 1\nB:2\n\n.\n"), uint8(1))
	f.Add([]byte("no header line\r\nx: y\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, bufSel uint8) {
		buf := 16 + int(bufSel)*8
		// Arbitrary bytes, terminated: must end without error or panic.
		if _, _, err := readAll(append(append([]byte{}, data...), "\r\n.\r\n"...), buf); err != nil && err != io.ErrUnexpectedEOF {
			t.Fatalf("arbitrary input: %v", err)
		}
		// As lines: stuffed and sent, they come back exactly.
		text := strings.ReplaceAll(strings.ReplaceAll(string(data), "\r", ""), "\n", "\x00")
		lines := strings.Split(text, "\x00")
		var wire, want bytes.Buffer
		for _, l := range lines {
			if strings.HasPrefix(l, ".") {
				wire.WriteByte('.')
			}
			wire.WriteString(l + "\r\n")
			want.WriteString(l + "\r\n")
		}
		wire.WriteString(".\r\n")
		out, content, err := readAll(wire.Bytes(), buf)
		if err != nil {
			t.Fatalf("stuffed input: %v", err)
		}
		if !bytes.Equal(content, want.Bytes()) {
			t.Fatalf("content %q, want %q", content, want.Bytes())
		}
		if out.eohs != 1 {
			t.Fatalf("%d EOH events", out.eohs)
		}
		var rebuilt []byte
		for _, h := range out.hdrs {
			name, value, _ := strings.Cut(h, ":")
			rebuilt = append(rebuilt, name...)
			rebuilt = append(rebuilt, ':')
			rebuilt = appendWireValue(rebuilt, value)
			rebuilt = append(rebuilt, '\r', '\n')
		}
		// Blanks before a header's colon are dropped (documented).
		var norm []byte
		for _, l := range bytes.SplitAfter(want.Bytes(), []byte("\r\n")) {
			if n := headerName(l); n > 0 {
				l = append(append(trimBlanks(append([]byte{}, l[:n]...)), ':'), l[n+1:]...)
			}
			norm = append(norm, l...)
		}
		if !bytes.HasPrefix(norm, rebuilt) {
			t.Fatalf("headers rebuilt %q are not the start of %q", rebuilt, want.Bytes())
		}
	})
}

// FuzzSession: any client input ends the session cleanly (no panic, no
// hang), and the server goes on serving.
func FuzzSession(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: s\r\n\r\nb\r\n.\r\nQUIT\r\n"))
	f.Add([]byte("HELO x\r\nXCLIENT ADDR=1.2.3.4\r\nEHLO y\r\nETRN z\r\nBDAT 10\r\n"))
	f.Add([]byte("EHLO x\r\nXFORWARD NAME=a ADDR=::1\r\nMAIL FROM:<> SIZE=5\r\nRCPT TO:<a> NOTIFY=NEVER\r\nDATA\r\n\n.\n"))
	b := pmulttest.New("b", pmult.Caps{Actions: pmult.ActModify})
	b.On[pmult.KindEOM] = pmulttest.Step{Edits: []pmult.Edit{{Kind: pmult.EditChangeHeader, Name: "Subject", Value: " x"},
		{Kind: pmult.EditAddRcpt, Addr: "<n@x>"}}}
	srv := &Server{Engine: &pmult.Engine{Slots: []pmult.Slot{{Backend: b}}}, NextHop: &fakeHop{rcptErr: map[string]error{}},
		Hostname: "mx.test", CommandTimeout: time.Second, DataTimeout: time.Second, AllowPipelining: true}
	srv.init()
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		c := srv.newConn(server)
		done := make(chan struct{})
		go func() { defer close(done); c.Serve(context.Background()) }()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(in)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
	})
}
