package milterproto

// Fuzz targets, one per decoder. Each checks that the decoder never panics
// and that a successful decode re-encodes to the input bytes. Exceptions,
// where the decoder deliberately ignores bytes (as libmilter does), are
// stated at the target and checked with a weaker invariant: the encoding
// is a prefix of the input, and decoding the encoding gives the same value.

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// Realistic payloads, shared by the seed corpora.
var (
	seedOptNegOffer = OptNeg{Version: 6, Actions: ActAllMask, Protocol: ProtoAllMask}.Append(nil)
	seedOptNegReply = OptNeg{Version: 6, Actions: ActAddHeaders | ActChangeHeaders | ActSetSymList,
		Protocol: ProtoNoRcpt | ProtoNRHeader | ProtoSkip | ProtoHdrLeadSpc | ProtoMDS256K,
		SymLists: []SymList{{StageConnect, "j {daemon_name}"}, {StageEnvFrom, "{auth_authen} i"}, {StageEOM, ""}}}.Append(nil)
	seedConnect4 = []byte("client.example\x004\x9c\x40198.51.100.7\x00")
	seedConnect6 = []byte("[2001:db8::1]\x006\x00\x192001:db8::1\x00")
	seedConnectL = []byte("localhost\x00L\x00\x00/var/run/smtp.sock\x00")
	seedConnectU = []byte("unknown\x00U")
	seedMacroC   = []byte("Cj\x00mx.example.org\x00{daemon_name}\x00mx\x00{daemon_addr}\x00192.0.2.1\x00v\x00Postfix 3.12\x00_\x00client.example [198.51.100.7]\x00")
	seedMacroM   = []byte("Mi\x004XyZ1\x00{auth_type}\x00PLAIN\x00{auth_authen}\x00alice\x00{mail_addr}\x00alice@example.org\x00")
	seedMacroL   = []byte("Li\x004XyZ1\x00")
	seedMail     = []byte("<alice@example.org>\x00SIZE=1234\x00BODY=8BITMIME\x00")
	seedRcpt     = []byte("<bob@example.net>\x00NOTIFY=SUCCESS,FAILURE\x00ORCPT=rfc822;bob@example.net\x00")
	seedHeader   = []byte("Received\x00 from a.example (a.example [192.0.2.1])\n\tby mx.example (Postfix) with ESMTP id 4XyZ1\n\tfor <bob@example.net>; Mon, 1 Jan 2024 00:00:00 +0000\x00")
	seedHeader2  = []byte("Subject\x00\t=?UTF-8?B?w6l0w6k=?=\n =?UTF-8?B?w6l0w6k=?=\x00")
)

// seedStream is a Postfix-like session as the MTA sends it.
func seedStream() []byte {
	var s []byte
	s = AppendPacket(s, CmdOptNeg, seedOptNegOffer)
	s = AppendPacket(s, CmdMacro, seedMacroC)
	s = AppendPacket(s, CmdConnect, seedConnect4)
	s = AppendPacket(s, CmdMacro, []byte{CmdHelo})
	s = AppendPacket(s, CmdHelo, []byte("client.example\x00"))
	s = AppendPacket(s, CmdMacro, seedMacroM)
	s = AppendPacket(s, CmdMail, seedMail)
	s = AppendPacket(s, CmdRcpt, seedRcpt)
	s = AppendPacket(s, CmdData)
	s = AppendPacket(s, CmdMacro, seedMacroL)
	s = AppendPacket(s, CmdHeader, seedHeader)
	s = AppendPacket(s, CmdEOH)
	s = AppendPacket(s, CmdBody, []byte("Hello\r\n\x00binary\r\n"))
	s = AppendPacket(s, CmdEOB)
	s = AppendPacket(s, CmdAbort)
	s = AppendPacket(s, CmdQuit)
	return s
}

// FuzzReadPacket reads a stream of packets through a Reader with a small
// limit and checks that the packets re-encode to exactly the consumed
// bytes, that the error is one of the documented ones, and that the
// Reader agrees with ParseFrames on the same bytes.
func FuzzReadPacket(f *testing.F) {
	stream := seedStream()
	f.Add(stream, uint16(300), false)
	f.Add(stream, uint16(300), true)
	f.Add(stream, uint16(20), false) // stops at a too-large packet
	f.Add(stream[:len(stream)-3], uint16(300), false)
	f.Add(AppendPacket(AppendPacket(nil, CmdBody, bytes.Repeat([]byte("x"), 200)), CmdEOB), uint16(200), true)
	f.Add([]byte{0, 0, 0, 0, 'A'}, uint16(10), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 'B'}, uint16(10), false)
	f.Add([]byte{0, 0, 1}, uint16(10), false)
	f.Add([]byte{}, uint16(1), false)
	f.Fuzz(func(t *testing.T, in []byte, limit uint16, oneByte bool) {
		maxData := int(limit%1024) + 1
		br := bytes.NewReader(in)
		var src io.Reader = br
		if oneByte {
			src = iotest.OneByteReader(br)
		}
		r := NewReader(src, maxData)
		var got []Packet
		var enc []byte
		var err error
		for {
			var p Packet
			p, err = r.ReadPacket()
			if err != nil {
				break
			}
			if len(p.Data) > maxData {
				t.Fatalf("packet of %d bytes passed limit %d", len(p.Data), maxData)
			}
			got = append(got, p)
			enc = AppendPacket(enc, p.Code, p.Data)
			// The Reader buffers ahead, so the bytes it consumed are
			// those of the packets it returned, in order.
			if len(enc) > len(in) || !bytes.Equal(enc, in[:len(enc)]) {
				t.Fatalf("re-encoded %q is not a prefix of the input", enc)
			}
		}
		switch {
		case err == io.EOF:
			if !bytes.Equal(enc, in) {
				t.Fatalf("clean EOF but re-encoded %d of %d bytes", len(enc), len(in))
			}
		case err == io.ErrUnexpectedEOF, err == ErrZeroLength, errors.Is(err, ErrTooLarge):
			if len(enc) == len(in) {
				t.Fatalf("error %v with no bytes left", err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}

		// ParseFrames must find the same packets. The error for the rest
		// may differ: ParseFrames reports ErrUnexpectedEOF for fewer
		// than 5 bytes before looking at the length word.
		frames, ferr := ParseFrames(in, maxData)
		if len(frames) != len(got) {
			t.Fatalf("ParseFrames found %d packets, Reader %d (errors %v / %v)", len(frames), len(got), ferr, err)
		}
		for i := range frames {
			if frames[i].Code != got[i].Code || !bytes.Equal(frames[i].Data, got[i].Data) {
				t.Fatalf("packet %d differs", i)
			}
		}
		if (ferr == nil) != (err == io.EOF) {
			t.Fatalf("ParseFrames error %v, Reader error %v", ferr, err)
		}
		if ferr != nil && len(in)-len(enc) >= 5 && !errors.Is(ferr, err) && !(errors.Is(ferr, ErrTooLarge) && errors.Is(err, ErrTooLarge)) {
			t.Fatalf("ParseFrames error %v, Reader error %v", ferr, err)
		}
	})
}

// FuzzParseFrames: the frames found re-encode to the consumed prefix; on
// success to the whole input.
func FuzzParseFrames(f *testing.F) {
	stream := seedStream()
	f.Add(stream, uint16(300))
	f.Add(stream, uint16(10))
	f.Add(stream[:len(stream)-1], uint16(300))
	f.Add([]byte{0, 0, 0, 0}, uint16(0))
	f.Add([]byte{0, 0, 0, 1, 'A', 0, 0, 0, 0, 'B'}, uint16(5))
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		maxData := int(limit)
		frames, err := ParseFrames(in, maxData)
		var enc []byte
		for _, p := range frames {
			if len(p.Data) > maxData {
				t.Fatalf("frame of %d bytes passed limit %d", len(p.Data), maxData)
			}
			if cap(p.Data) != len(p.Data) {
				t.Fatalf("frame Data has spare capacity %d", cap(p.Data)-len(p.Data))
			}
			enc = AppendPacket(enc, p.Code, p.Data)
		}
		if !bytes.HasPrefix(in, enc) {
			t.Fatalf("frames re-encode to %q, not a prefix of the input", enc)
		}
		switch {
		case err == nil:
			if len(enc) != len(in) {
				t.Fatalf("success but re-encoded %d of %d bytes", len(enc), len(in))
			}
		case err == io.ErrUnexpectedEOF, err == ErrZeroLength, errors.Is(err, ErrTooLarge):
			if len(enc) == len(in) {
				t.Fatalf("error %v with no bytes left", err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzParseOptNeg: exact round trip.
func FuzzParseOptNeg(f *testing.F) {
	f.Add(seedOptNegOffer)
	f.Add(seedOptNegReply)
	f.Add(OptNeg{Version: 2, Actions: ActV2Mask, Protocol: ProtoV2Mask}.Append(nil))
	f.Add(append(append([]byte(nil), seedOptNegOffer...), 0, 0, 0, 1))
	f.Add(append(append([]byte(nil), seedOptNegOffer...), 0, 0, 0, 1, 'i'))
	f.Add(seedOptNegOffer[:11])
	f.Fuzz(func(t *testing.T, in []byte) {
		o, err := ParseOptNeg(in)
		if err != nil {
			checkParseError(t, err, CmdOptNeg)
			return
		}
		if enc := o.Append(nil); !bytes.Equal(enc, in) {
			t.Fatalf("Append = %q, input %q", enc, in)
		}
	})
}

// FuzzParseMacro: exact round trip, an even number of strings.
func FuzzParseMacro(f *testing.F) {
	f.Add(seedMacroC)
	f.Add(seedMacroM)
	f.Add(seedMacroL)
	f.Add([]byte("C"))
	f.Add([]byte("B"))
	f.Add([]byte("Ci\x00"))
	f.Add([]byte("Ci\x00v"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ParseMacro(in)
		if err != nil {
			checkParseError(t, err, CmdMacro)
			return
		}
		if len(m.Pairs)%2 != 0 {
			t.Fatalf("%d strings", len(m.Pairs))
		}
		if enc := m.Append(nil); !bytes.Equal(enc, in) {
			t.Fatalf("Append = %q, input %q", enc, in)
		}
		// Through Strings, twice from one arena: the same lists, and
		// the first is not overwritten by the second or by an append.
		var a Strings
		m1, err1 := a.ParseMacro(in)
		m2, err2 := a.ParseMacro(in)
		if err1 != nil || err2 != nil || !slices.Equal(m1.Pairs, m.Pairs) || !slices.Equal(m2.Pairs, m.Pairs) {
			t.Fatalf("Strings.ParseMacro = %q %v / %q %v, ParseMacro %q", m1.Pairs, err1, m2.Pairs, err2, m.Pairs)
		}
		_ = append(m1.Pairs, "x")
		if !slices.Equal(m2.Pairs, m.Pairs) {
			t.Fatalf("append to the first list changed the second: %q", m2.Pairs)
		}
	})
}

// FuzzParseConnect. Exceptions to the exact round trip: for family 'U'
// the bytes after the family are ignored, and for the other families the
// bytes after the address's NUL are ignored (libmilter reads the address
// as a C string too). The round trip is exact when nothing is ignored.
func FuzzParseConnect(f *testing.F) {
	f.Add(seedConnect4)
	f.Add(seedConnect6)
	f.Add(seedConnectL)
	f.Add(seedConnectU)
	f.Add(append(append([]byte(nil), seedConnectU...), "\x00\x19junk"...))
	f.Add([]byte("[198.51.100.7]\x004\x00\x19198.51.100.7\x00trailing"))
	f.Add([]byte("h\x004\x00"))
	f.Add([]byte("h\x00X\x00\x00a\x00"))
	f.Add([]byte("h"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := ParseConnect(in)
		if err != nil {
			checkParseError(t, err, CmdConnect)
			return
		}
		switch c.Family {
		case FamilyUnknown:
			if c.Port != 0 || c.Address != "" {
				t.Fatalf("family U with port %d address %q", c.Port, c.Address)
			}
		case FamilyUnix, FamilyInet, FamilyInet6:
		default:
			t.Fatalf("accepted family %q", c.Family)
		}
		enc := c.Append(nil)
		if !bytes.HasPrefix(in, enc) {
			t.Fatalf("Append = %q, not a prefix of %q", enc, in)
		}
		// Nothing ignored: for 'U' the input ends with the family, for
		// the others the first NUL after the port is the last byte.
		exact := len(in) == len(c.Hostname)+2
		if c.Family != FamilyUnknown {
			addr := in[len(c.Hostname)+4:]
			exact = bytes.IndexByte(addr, 0) == len(addr)-1
		}
		if exact != bytes.Equal(enc, in) {
			t.Fatalf("Append = %q, input %q, nothing ignored: %v", enc, in, exact)
		}
		c2, err := ParseConnect(enc)
		if err != nil || c2 != c {
			t.Fatalf("re-parse of %q = %+v, %v; want %+v", enc, c2, err, c)
		}
	})
}

// FuzzParseArgv: exact round trip, at least one string.
func FuzzParseArgv(f *testing.F) {
	f.Add(CmdMail, seedMail)
	f.Add(CmdRcpt, seedRcpt)
	f.Add(CmdMail, []byte("<>\x00"))
	f.Add(CmdRcpt, []byte("\x00"))
	f.Add(CmdRcpt, []byte(""))
	f.Add(CmdMail, []byte("<a@b>\x00SIZE"))
	f.Fuzz(func(t *testing.T, code byte, in []byte) {
		ss, err := ParseArgv(code, in)
		if err != nil {
			checkParseError(t, err, code)
			return
		}
		if len(ss) == 0 {
			t.Fatal("no strings")
		}
		if enc := AppendStrings(nil, ss...); !bytes.Equal(enc, in) {
			t.Fatalf("re-encoded %q, input %q", enc, in)
		}
	})
}

// FuzzParseHeader. Exception: bytes after the value's NUL are ignored, so
// the round trip is exact only when the input holds exactly two NULs, the
// last byte being one. Name and value bytes (leading space, tab, "\n"
// folding, CR, 8-bit) are always kept.
func FuzzParseHeader(f *testing.F) {
	f.Add(CmdHeader, seedHeader)
	f.Add(CmdHeader, seedHeader2)
	f.Add(RespAddHeader, []byte("X-Spam\x00 yes\x00"))
	f.Add(CmdHeader, []byte("Subject\x00"))
	f.Add(CmdHeader, []byte("A\x00b\x00c\x00"))
	f.Fuzz(func(t *testing.T, code byte, in []byte) {
		h, err := ParseHeader(code, in)
		if err != nil {
			checkParseError(t, err, code)
			return
		}
		if h.Index != 0 {
			t.Fatalf("index %d", h.Index)
		}
		enc := h.AppendHeader(nil)
		if !bytes.HasPrefix(in, enc) {
			t.Fatalf("AppendHeader = %q, not a prefix of %q", enc, in)
		}
		if bytes.Count(in, []byte{0}) == 2 && in[len(in)-1] == 0 && !bytes.Equal(enc, in) {
			t.Fatalf("AppendHeader = %q, input %q", enc, in)
		}
		h2, err := ParseHeader(code, enc)
		if err != nil || h2 != h {
			t.Fatalf("re-parse = %+v, %v; want %+v", h2, err, h)
		}
	})
}

// FuzzParseIndexedHeader: as FuzzParseHeader, after a 4-byte index.
func FuzzParseIndexedHeader(f *testing.F) {
	f.Add(RespInsHeader, []byte("\x00\x00\x00\x00X-Spam\x00 yes\x00"))
	f.Add(RespChgHeader, []byte("\x00\x00\x00\x02Subject\x00\x00"))
	f.Add(RespChgHeader, append([]byte{0, 0, 0, 1}, seedHeader...))
	f.Add(RespChgHeader, []byte("\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, code byte, in []byte) {
		h, err := ParseIndexedHeader(code, in)
		if err != nil {
			checkParseError(t, err, code)
			return
		}
		enc := h.AppendIndexed(nil)
		if !bytes.HasPrefix(in, enc) {
			t.Fatalf("AppendIndexed = %q, not a prefix of %q", enc, in)
		}
		if bytes.Count(in[4:], []byte{0}) == 2 && in[len(in)-1] == 0 && !bytes.Equal(enc, in) {
			t.Fatalf("AppendIndexed = %q, input %q", enc, in)
		}
		h2, err := ParseIndexedHeader(code, enc)
		if err != nil || h2 != h {
			t.Fatalf("re-parse = %+v, %v; want %+v", h2, err, h)
		}
	})
}

// FuzzParseAddrArgs. Exception: bytes after the arguments' NUL are
// ignored; the round trip is exact when the input holds at most two NULs
// and ends with one.
func FuzzParseAddrArgs(f *testing.F) {
	f.Add(RespChgFrom, []byte("<new@example.org>\x00"))
	f.Add(RespChgFrom, []byte("<new@example.org>\x00RET=HDRS ENVID=abc\x00"))
	f.Add(RespAddRcptPar, []byte("<c@example.net>\x00NOTIFY=NEVER\x00"))
	f.Add(RespAddRcptPar, []byte("<c@example.net>\x00\x00"))
	f.Add(RespAddRcptPar, []byte("<c@example.net>\x00NOTIFY"))
	f.Fuzz(func(t *testing.T, code byte, in []byte) {
		a, err := ParseAddrArgs(code, in)
		if err != nil {
			checkParseError(t, err, code)
			return
		}
		if !a.HasArgs && a.Args != "" {
			t.Fatalf("args %q without HasArgs", a.Args)
		}
		enc := a.Append(nil)
		if !bytes.HasPrefix(in, enc) {
			t.Fatalf("Append = %q, not a prefix of %q", enc, in)
		}
		if bytes.Count(in, []byte{0}) <= 2 && in[len(in)-1] == 0 && !bytes.Equal(enc, in) {
			t.Fatalf("Append = %q, input %q", enc, in)
		}
		a2, err := ParseAddrArgs(code, enc)
		if err != nil || a2 != a {
			t.Fatalf("re-parse = %+v, %v; want %+v", a2, err, a)
		}
	})
}

// FuzzSplitStrings: exact round trip. It also checks ParseString, whose
// exception is that bytes after the first NUL are ignored: it must return
// the first string SplitStrings finds.
func FuzzSplitStrings(f *testing.F) {
	f.Add(seedMail)
	f.Add(seedRcpt)
	f.Add([]byte("client.example\x00"))
	f.Add([]byte("550-5.7.1 a\r\n550 5.7.1 b\x00"))
	f.Add([]byte("\x00\x00"))
	f.Add([]byte("a\x00b"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		ss, err := SplitStrings(CmdHelo, in)
		s, serr := ParseString(CmdHelo, in)
		if serr == nil {
			if i := bytes.IndexByte(in, 0); s != string(in[:i]) {
				t.Fatalf("ParseString = %q, want %q", s, in[:i])
			}
		} else {
			checkParseError(t, serr, CmdHelo)
			if bytes.IndexByte(in, 0) >= 0 {
				t.Fatalf("ParseString failed on input with a NUL: %v", serr)
			}
		}
		if err != nil {
			checkParseError(t, err, CmdHelo)
			if len(in) == 0 || in[len(in)-1] == 0 {
				t.Fatalf("SplitStrings failed on a terminated input: %v", err)
			}
			return
		}
		if len(ss) != bytes.Count(in, []byte{0}) {
			t.Fatalf("%d strings for %d NULs", len(ss), bytes.Count(in, []byte{0}))
		}
		if len(ss) > 0 && (serr != nil || s != ss[0]) {
			t.Fatalf("ParseString = %q, %v; SplitStrings[0] = %q", s, serr, ss[0])
		}
		if enc := AppendStrings(nil, ss...); !bytes.Equal(enc, in) {
			t.Fatalf("re-encoded %q, input %q", enc, in)
		}
		if len(in) == 0 && !reflect.DeepEqual(ss, []string(nil)) {
			t.Fatalf("empty input gave %q", ss)
		}
	})
}

// checkParseError checks that a decoder error is a *ParseError for code.
func checkParseError(t *testing.T, err error, code byte) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Code != code || pe.Reason == "" {
		t.Fatalf("error %v (%T) is not a ParseError for %q", err, err, code)
	}
}

// FuzzValidReplyCode compares ValidReplyCode with a transcription of
// Postfix's check (milter8.c, milter8_valid_smtp_reply, with the
// same-code rule that Postfix's snapshot releases add): walk the text
// line by line, each line ending at the first CR or LF.
func FuzzValidReplyCode(f *testing.F) {
	for _, s := range []string{"550 5.7.1 no", "550", "550 4.7.1 x", "451-4.7.1 a\r\n451 4.7.1 b",
		"550-5.7.1 a\r\n551 5.7.1 b", "550 5.7.1 a\r\n", "550 a\x00", "550-a\nb", "421 "} {
		f.Add(s)
	}
	postfix := func(s string) bool {
		if strings.IndexByte(s, 0) >= 0 {
			return false
		}
		cp := 0
		for cp < len(s) {
			n := strings.IndexAny(s[cp:], "\r\n")
			if n < 0 {
				n = len(s) - cp
			}
			end := cp + n
			final := end == len(s)
			sep := byte('-')
			if final {
				sep = ' '
			}
			isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
			if n < 4 || (s[cp] != '4' && s[cp] != '5') || !isDigit(s[cp+1]) || !isDigit(s[cp+2]) ||
				s[cp+3] != sep || (n > 4 && isDigit(s[cp+4]) && s[cp+4] != s[cp]) {
				return false
			}
			if s[cp:cp+3] != s[:3] {
				return false
			}
			if final {
				return true
			}
			if end > len(s)-2 || s[end] != '\r' || s[end+1] != '\n' {
				return false
			}
			cp = end + 2
		}
		return false
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidReplyCode(s)
		if want := postfix(s); (err == nil) != want {
			t.Fatalf("ValidReplyCode(%q) = %v, Postfix's check says valid=%v", s, err, want)
		}
		if err != nil && len(err.Error()) > 300 { // 40 bytes of text, quoted
			t.Fatalf("error not truncated: %q", err)
		}
	})
}
