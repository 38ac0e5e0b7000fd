package milterproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// u32 returns the big-endian bytes of v as a string, for building payloads.
func u32(v uint32) string { return string(binary.BigEndian.AppendUint32(nil, v)) }

// u16 returns the big-endian bytes of v as a string.
func u16(v uint16) string { return string(binary.BigEndian.AppendUint16(nil, v)) }

// wantParseError checks that err is a *ParseError for code whose reason
// contains substr.
func wantParseError(t *testing.T, err error, code byte, substr string) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v (%T), want *ParseError", err, err)
	}
	if pe.Code != code {
		t.Errorf("ParseError.Code = %q, want %q", pe.Code, code)
	}
	if !strings.Contains(pe.Reason, substr) {
		t.Errorf("ParseError.Reason = %q, want it to contain %q", pe.Reason, substr)
	}
	if !strings.Contains(err.Error(), CodeName(code)) {
		t.Errorf("Error() = %q does not name the code", err.Error())
	}
}

func TestCodeNames(t *testing.T) {
	tests := []struct {
		c               byte
		code, cmd, resp string
		isCmd           bool
	}{
		{CmdRcpt, "SMFIC_RCPT", "SMFIC_RCPT", "unknown reply 0x52", true},
		{CmdOptNeg, "SMFIC_OPTNEG", "SMFIC_OPTNEG", "unknown reply 0x4f", true},
		{RespContinue, "SMFIR_CONTINUE", "unknown command 0x63", "SMFIR_CONTINUE", false},
		{RespAddRcptPar, "SMFIR_ADDRCPT_PAR", "unknown command 0x32", "SMFIR_ADDRCPT_PAR", false},
		{'Z', "unknown code 0x5a", "unknown command 0x5a", "unknown reply 0x5a", false},
	}
	for _, tt := range tests {
		if got := CodeName(tt.c); got != tt.code {
			t.Errorf("CodeName(%q) = %q, want %q", tt.c, got, tt.code)
		}
		if got := CmdName(tt.c); got != tt.cmd {
			t.Errorf("CmdName(%q) = %q, want %q", tt.c, got, tt.cmd)
		}
		if got := RespName(tt.c); got != tt.resp {
			t.Errorf("RespName(%q) = %q, want %q", tt.c, got, tt.resp)
		}
		if got := IsCommand(tt.c); got != tt.isCmd {
			t.Errorf("IsCommand(%q) = %v", tt.c, got)
		}
	}
	for _, c := range []byte("ABCDEHKLMNOQRTU") {
		if !IsCommand(c) || strings.HasPrefix(CmdName(c), "unknown") {
			t.Errorf("command %q not known", c)
		}
	}
	for _, c := range []byte("+-24abcdefhilmpqrsty") {
		if strings.HasPrefix(RespName(c), "unknown") {
			t.Errorf("reply %q not known", c)
		}
	}
}

func TestSplitStrings(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "one empty string", in: "\x00", want: []string{""}},
		{name: "two", in: "a\x00bc\x00", want: []string{"a", "bc"}},
		{name: "empty strings kept", in: "\x00\x00x\x00", want: []string{"", "", "x"}},
		{name: "8-bit bytes kept", in: "\xff\xfe\r\n\x00", want: []string{"\xff\xfe\r\n"}},
		{name: "unterminated", in: "a\x00b", wantErr: true},
		{name: "no NUL at all", in: "abc", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SplitStrings(CmdMail, []byte(tt.in))
			if tt.wantErr {
				wantParseError(t, err, CmdMail, "not NUL-terminated")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if enc := AppendStrings(nil, got...); string(enc) != tt.in {
				t.Fatalf("AppendStrings = %q, want %q", enc, tt.in)
			}
		})
	}
}

func TestParseString(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "mx.example.org\x00", want: "mx.example.org"},
		{in: "\x00", want: ""},
		{in: "550 5.7.1 no\x00trailing ignored", want: "550 5.7.1 no"},
		{in: "a\x00b\x00", want: "a"},
		{in: "", wantErr: true},
		{in: "no nul", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseString(CmdHelo, []byte(tt.in))
		if tt.wantErr {
			wantParseError(t, err, CmdHelo, "string not NUL-terminated")
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseString(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseOptNeg(t *testing.T) {
	hdr := u32(6) + u32(0x1FF) + u32(0x1FFFFF)
	tests := []struct {
		name   string
		in     string
		want   OptNeg
		errSub string // non-empty: an error is expected
	}{
		{name: "MTA offer, 12 bytes", in: hdr, want: OptNeg{Version: 6, Actions: 0x1FF, Protocol: 0x1FFFFF}},
		{name: "v2 offer", in: u32(2) + u32(0x3F) + u32(0x7F), want: OptNeg{Version: 2, Actions: 0x3F, Protocol: 0x7F}},
		{name: "MDS bits", in: u32(6) + u32(0) + u32(0x301FFFFF), want: OptNeg{Version: 6, Protocol: 0x301FFFFF}},
		{name: "with symlists", in: hdr + u32(0) + "j {daemon_name}\x00" + u32(2) + "{auth_authen} i\x00",
			want: OptNeg{Version: 6, Actions: 0x1FF, Protocol: 0x1FFFFF, SymLists: []SymList{
				{Stage: StageConnect, Macros: "j {daemon_name}"}, {Stage: StageEnvFrom, Macros: "{auth_authen} i"}}}},
		{name: "empty macro list", in: hdr + u32(5) + "\x00",
			want: OptNeg{Version: 6, Actions: 0x1FF, Protocol: 0x1FFFFF, SymLists: []SymList{{Stage: StageEOM}}}},
		{name: "stage out of range kept", in: hdr + u32(99) + "x\x00",
			want: OptNeg{Version: 6, Actions: 0x1FF, Protocol: 0x1FFFFF, SymLists: []SymList{{Stage: 99, Macros: "x"}}}},
		{name: "empty", in: "", errSub: "0 bytes, need 12"},
		{name: "11 bytes", in: hdr[:11], errSub: "11 bytes, need 12"},
		{name: "truncated symlist: 1 byte", in: hdr + "\x00", errSub: "truncated macro list"},
		{name: "truncated symlist: stage only", in: hdr + u32(1), errSub: "truncated macro list"},
		{name: "truncated second symlist", in: hdr + u32(1) + "i\x00" + u32(2)[:3], errSub: "truncated macro list"},
		{name: "missing NUL", in: hdr + u32(1) + "{tls_version}", errSub: "macro list not NUL-terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOptNeg([]byte(tt.in))
			if tt.errSub != "" {
				wantParseError(t, err, CmdOptNeg, tt.errSub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if enc := got.Append(nil); string(enc) != tt.in {
				t.Fatalf("Append = %q, want %q", enc, tt.in)
			}
			if enc := got.Append([]byte("xy")); string(enc) != "xy"+tt.in {
				t.Fatalf("Append to prefix = %q", enc)
			}
		})
	}
}

func TestParseMacro(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   Macro
		errSub string
	}{
		{name: "empty pair list", in: "C", want: Macro{Cmd: 'C'}},
		{name: "Postfix connect macros in order", in: "Cj\x00mx.example.org\x00{daemon_name}\x00mx\x00{daemon_addr}\x00192.0.2.1\x00v\x00Postfix 3.12\x00_\x00client.example [198.51.100.7]\x00",
			want: Macro{Cmd: 'C', Pairs: []string{"j", "mx.example.org", "{daemon_name}", "mx",
				"{daemon_addr}", "192.0.2.1", "v", "Postfix 3.12", "_", "client.example [198.51.100.7]"}}},
		{name: "order kept", in: "Mz\x001\x00a\x002\x00", want: Macro{Cmd: 'M', Pairs: []string{"z", "1", "a", "2"}}},
		{name: "empty value", in: "Ri\x00\x00", want: Macro{Cmd: 'R', Pairs: []string{"i", ""}}},
		{name: "unknown cmdcode L (Postfix header macros)", in: "Li\x004XyZ1\x00", want: Macro{Cmd: 'L', Pairs: []string{"i", "4XyZ1"}}},
		{name: "unknown cmdcode B (Postfix body macros)", in: "Bi\x004XyZ1\x00", want: Macro{Cmd: 'B', Pairs: []string{"i", "4XyZ1"}}},
		{name: "cmdcode U, empty", in: "U", want: Macro{Cmd: 'U'}},
		{name: "arbitrary cmdcode byte", in: "\x00", want: Macro{Cmd: 0}},
		{name: "no cmdcode", in: "", errSub: "no command code"},
		{name: "odd count", in: "Ci\x00", errSub: "odd number of strings (1)"},
		{name: "odd count 3", in: "Ci\x00v\x00j\x00", errSub: "odd number of strings (3)"},
		{name: "unterminated", in: "Ci\x00value", errSub: "not NUL-terminated"},
		{name: "unterminated name", in: "Ci", errSub: "not NUL-terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMacro([]byte(tt.in))
			if tt.errSub != "" {
				wantParseError(t, err, CmdMacro, tt.errSub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Cmd != tt.want.Cmd || len(got.Pairs) != len(tt.want.Pairs) ||
				(len(got.Pairs) > 0 && !reflect.DeepEqual(got.Pairs, tt.want.Pairs)) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
			if enc := got.Append(nil); string(enc) != tt.in {
				t.Fatalf("Append = %q, want %q", enc, tt.in)
			}
		})
	}
}

func TestParseConnect(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   Connect
		exact  bool // Append gives the input back
		errSub string
	}{
		{name: "IPv4", in: "client.example\x004" + u16(54321) + "198.51.100.7\x00",
			want: Connect{Hostname: "client.example", Family: FamilyInet, Port: 54321, Address: "198.51.100.7"}, exact: true},
		{name: "IPv6", in: "[2001:db8::1]\x006" + u16(25) + "2001:db8::1\x00",
			want: Connect{Hostname: "[2001:db8::1]", Family: FamilyInet6, Port: 25, Address: "2001:db8::1"}, exact: true},
		{name: "IPv6 IPv4-mapped text kept", in: "h\x006" + u16(1) + "IPv6:::ffff:192.0.2.1\x00",
			want: Connect{Hostname: "h", Family: FamilyInet6, Port: 1, Address: "IPv6:::ffff:192.0.2.1"}, exact: true},
		{name: "unix: port 0 + path", in: "localhost\x00L" + u16(0) + "/var/run/smtp.sock\x00",
			want: Connect{Hostname: "localhost", Family: FamilyUnix, Address: "/var/run/smtp.sock"}, exact: true},
		{name: "unknown family: no port, no address", in: "unknown\x00U",
			want: Connect{Hostname: "unknown", Family: FamilyUnknown}, exact: true},
		{name: "unknown family: trailing bytes ignored", in: "unknown\x00U" + u16(25) + "junk",
			want: Connect{Hostname: "unknown", Family: FamilyUnknown}},
		{name: "address: bytes after NUL ignored", in: "h\x004" + u16(25) + "192.0.2.1\x00junk",
			want: Connect{Hostname: "h", Family: FamilyInet, Port: 25, Address: "192.0.2.1"}},
		{name: "empty hostname and address", in: "\x004" + u16(0) + "\x00",
			want: Connect{Family: FamilyInet}, exact: true},
		{name: "empty", in: "", errSub: "hostname not NUL-terminated"},
		{name: "hostname missing NUL", in: "client.example", errSub: "hostname not NUL-terminated"},
		{name: "no family", in: "client.example\x00", errSub: "no address family"},
		{name: "unknown family", in: "h\x00X" + u16(25) + "a\x00", errSub: "unknown address family 0x58"},
		{name: "missing port", in: "h\x004", errSub: "no port"},
		{name: "half a port", in: "h\x004\x00", errSub: "no port"},
		{name: "unix missing port", in: "h\x00L", errSub: "no port"},
		{name: "address missing NUL", in: "h\x004" + u16(25) + "192.0.2.1", errSub: "address not NUL-terminated"},
		{name: "no address at all", in: "h\x006" + u16(25), errSub: "address not NUL-terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConnect([]byte(tt.in))
			if tt.errSub != "" {
				wantParseError(t, err, CmdConnect, tt.errSub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			enc := got.Append(nil)
			if tt.exact && string(enc) != tt.in {
				t.Fatalf("Append = %q, want %q", enc, tt.in)
			}
			if !strings.HasPrefix(tt.in, string(enc)) {
				t.Fatalf("Append = %q is not a prefix of %q", enc, tt.in)
			}
		})
	}
}

func TestParseArgv(t *testing.T) {
	tests := []struct {
		name   string
		code   byte
		in     string
		want   []string
		errSub string
	}{
		{name: "MAIL address only", code: CmdMail, in: "<alice@example.org>\x00", want: []string{"<alice@example.org>"}},
		{name: "MAIL with ESMTP args kept separate", code: CmdMail,
			in:   "<alice@example.org>\x00SIZE=1234\x00BODY=8BITMIME\x00SMTPUTF8\x00",
			want: []string{"<alice@example.org>", "SIZE=1234", "BODY=8BITMIME", "SMTPUTF8"}},
		{name: "RCPT with NOTIFY and ORCPT", code: CmdRcpt,
			in:   "<bob@example.net>\x00NOTIFY=SUCCESS,FAILURE\x00ORCPT=rfc822;bob@example.net\x00",
			want: []string{"<bob@example.net>", "NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@example.net"}},
		{name: "null sender", code: CmdMail, in: "<>\x00", want: []string{"<>"}},
		{name: "raw address without brackets", code: CmdRcpt, in: "bob\x00", want: []string{"bob"}},
		{name: "empty address string", code: CmdRcpt, in: "\x00", want: []string{""}},
		{name: "empty packet", code: CmdMail, in: "", errSub: "no address"},
		{name: "empty RCPT packet", code: CmdRcpt, in: "", errSub: "no address"},
		{name: "unterminated", code: CmdRcpt, in: "<bob@example.net>", errSub: "not NUL-terminated"},
		{name: "unterminated arg", code: CmdMail, in: "<a@b>\x00SIZE=1", errSub: "not NUL-terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseArgv(tt.code, []byte(tt.in))
			if tt.errSub != "" {
				wantParseError(t, err, tt.code, tt.errSub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if enc := AppendStrings(nil, got...); string(enc) != tt.in {
				t.Fatalf("re-encoded %q, want %q", enc, tt.in)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name   string
		code   byte
		in     string
		want   Header
		exact  bool
		errSub string
	}{
		{name: "plain", code: CmdHeader, in: "Subject\x00hello\x00", want: Header{Name: "Subject", Value: "hello"}, exact: true},
		{name: "leading space kept (HDR_LEADSPC)", code: CmdHeader, in: "Subject\x00 hello\x00",
			want: Header{Name: "Subject", Value: " hello"}, exact: true},
		{name: "two leading spaces kept", code: CmdHeader, in: "Subject\x00  hello\x00",
			want: Header{Name: "Subject", Value: "  hello"}, exact: true},
		{name: "leading tab kept", code: CmdHeader, in: "X-Tab\x00\tvalue\x00",
			want: Header{Name: "X-Tab", Value: "\tvalue"}, exact: true},
		{name: "folding with \\n kept", code: CmdHeader,
			in:    "Received\x00 from a.example (a.example [192.0.2.1])\n\tby mx.example (Postfix) with ESMTP id 4XyZ1\n\tfor <bob@example.net>; Mon, 1 Jan 2024 00:00:00 +0000\x00",
			want:  Header{Name: "Received", Value: " from a.example (a.example [192.0.2.1])\n\tby mx.example (Postfix) with ESMTP id 4XyZ1\n\tfor <bob@example.net>; Mon, 1 Jan 2024 00:00:00 +0000"},
			exact: true},
		{name: "folding with space continuation", code: CmdHeader, in: "To\x00a@b,\n c@d\x00",
			want: Header{Name: "To", Value: "a@b,\n c@d"}, exact: true},
		{name: "CR and 8-bit kept", code: CmdHeader, in: "X-Raw\x00\xc3\xa9t\xc3\xa9\r\x00",
			want: Header{Name: "X-Raw", Value: "\xc3\xa9t\xc3\xa9\r"}, exact: true},
		{name: "empty value", code: RespAddHeader, in: "X-Empty\x00\x00", want: Header{Name: "X-Empty"}, exact: true},
		{name: "bytes after value ignored", code: CmdHeader, in: "A\x00b\x00c\x00",
			want: Header{Name: "A", Value: "b"}},
		{name: "empty", code: CmdHeader, in: "", errSub: "header name not NUL-terminated"},
		{name: "name only, no NUL", code: CmdHeader, in: "Subject", errSub: "header name not NUL-terminated"},
		{name: "no value", code: CmdHeader, in: "Subject\x00", errSub: "header value not NUL-terminated"},
		{name: "value missing NUL", code: RespAddHeader, in: "Subject\x00hello", errSub: "header value not NUL-terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHeader(tt.code, []byte(tt.in))
			if tt.errSub != "" {
				wantParseError(t, err, tt.code, tt.errSub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
			enc := got.AppendHeader(nil)
			if tt.exact && string(enc) != tt.in {
				t.Fatalf("AppendHeader = %q, want %q", enc, tt.in)
			}
			if !strings.HasPrefix(tt.in, string(enc)) {
				t.Fatalf("AppendHeader = %q not a prefix of %q", enc, tt.in)
			}
		})
	}
}

func TestParseIndexedHeader(t *testing.T) {
	tests := []struct {
		name   string
		code   byte
		in     string
		want   Header
		errSub string
	}{
		{name: "INSHEADER at top", code: RespInsHeader, in: u32(0) + "X-Spam\x00 yes\x00",
			want: Header{Index: 0, Name: "X-Spam", Value: " yes"}},
		{name: "CHGHEADER delete", code: RespChgHeader, in: u32(2) + "Subject\x00\x00",
			want: Header{Index: 2, Name: "Subject"}},
		{name: "CHGHEADER folded", code: RespChgHeader, in: u32(0xFFFFFFFF) + "X-A\x00a\n\tb\x00",
			want: Header{Index: 0xFFFFFFFF, Name: "X-A", Value: "a\n\tb"}},
		{name: "empty", code: RespInsHeader, in: "", errSub: "no index"},
		{name: "short index", code: RespChgHeader, in: "\x00\x00\x01", errSub: "no index"},
		{name: "index only", code: RespChgHeader, in: u32(1), errSub: "header name not NUL-terminated"},
		{name: "no value", code: RespInsHeader, in: u32(1) + "X\x00", errSub: "header value not NUL-terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIndexedHeader(tt.code, []byte(tt.in))
			if tt.errSub != "" {
				wantParseError(t, err, tt.code, tt.errSub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
			if enc := got.AppendIndexed(nil); string(enc) != tt.in {
				t.Fatalf("AppendIndexed = %q, want %q", enc, tt.in)
			}
		})
	}
}

func TestParseAddrArgs(t *testing.T) {
	tests := []struct {
		name   string
		code   byte
		in     string
		want   AddrArgs
		exact  bool
		errSub string
	}{
		{name: "address only", code: RespChgFrom, in: "<new@example.org>\x00",
			want: AddrArgs{Addr: "<new@example.org>"}, exact: true},
		{name: "with args (one string)", code: RespChgFrom, in: "<new@example.org>\x00RET=HDRS ENVID=abc\x00",
			want: AddrArgs{Addr: "<new@example.org>", Args: "RET=HDRS ENVID=abc", HasArgs: true}, exact: true},
		{name: "ADDRCPT_PAR with args", code: RespAddRcptPar, in: "<c@example.net>\x00NOTIFY=NEVER\x00",
			want: AddrArgs{Addr: "<c@example.net>", Args: "NOTIFY=NEVER", HasArgs: true}, exact: true},
		{name: "empty args present", code: RespAddRcptPar, in: "<c@example.net>\x00\x00",
			want: AddrArgs{Addr: "<c@example.net>", HasArgs: true}, exact: true},
		{name: "bytes after args ignored", code: RespChgFrom, in: "<a>\x00X=1\x00junk",
			want: AddrArgs{Addr: "<a>", Args: "X=1", HasArgs: true}},
		{name: "empty", code: RespChgFrom, in: "", errSub: "address not NUL-terminated"},
		{name: "address unterminated", code: RespChgFrom, in: "<a>", errSub: "address not NUL-terminated"},
		{name: "args unterminated", code: RespAddRcptPar, in: "<a>\x00NOTIFY", errSub: "arguments not NUL-terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAddrArgs(tt.code, []byte(tt.in))
			if tt.errSub != "" {
				wantParseError(t, err, tt.code, tt.errSub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
			enc := got.Append(nil)
			if tt.exact && string(enc) != tt.in {
				t.Fatalf("Append = %q, want %q", enc, tt.in)
			}
			if !strings.HasPrefix(tt.in, string(enc)) {
				t.Fatalf("Append = %q not a prefix of %q", enc, tt.in)
			}
		})
	}
}

func TestValidReplyCode(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"550 5.7.1 Command rejected", true},
		{"451 4.7.1 Service unavailable - try again later", true},
		{"421 4.3.2 Shutting down", true},
		{"550-5.7.1 a\r\n550 5.7.1 b", true},
		{"550-5.7.1 a\r\n550-5.7.1 b\r\n550 5.7.1 c", true},
		{"550 no enhanced code", true},
		{"550 ", true},
		{"400 x", true},
		{"550 5", true},
		// Malformed for Postfix (milter8.c): a bare code, an enhanced
		// status code of another class (libmilter's smfi_setreply makes
		// "550 4.7.1"), a line that is not a reply line.
		{"550", false},
		{"599", false},
		{"550 4.7.1 wrong class", false},
		{"450 5.7.1 wrong class", false},
		{"550 2.0.0 wrong class", false},
		{"550-5.7.1 a\r\n550 4.7.1 b", false},
		// Multi-line: '-' on every line but the last, ' ' on the last, the
		// same code on every line, CR LF between lines and none after.
		{"550-5.7.1 a\r\n551 5.7.1 b", false},
		{"550-5.7.1 a\r\n450 4.7.1 b", false},
		{"550 5.7.1 a\r\n550 5.7.1 b", false},
		{"550-5.7.1 a\r\n550-5.7.1 b", false},
		{"550-5.7.1 a", false},
		{"550-5.7.1 a\n550 5.7.1 b", false},
		{"550-5.7.1 a\r550 5.7.1 b", false},
		{"550 5.7.1 a\r\n", false},
		{"550-5.7.1 a\r\n", false},
		{"550-5.7.1 a\r\nx", false},
		{"550 5.7.1 a\nb", false},
		{"550 a\x00b", false},
		{"250 ok", false},
		{"55", false},
		{"", false},
		{"5", false},
		{"650 x", false},
		{"5a0 x", false},
		{"55a x", false},
		{"550x", false},
		{"550\r\n", false},
		{" 550 x", false},
		{"550 " + strings.Repeat("x", 100), true},
		{"250 " + strings.Repeat("x", 100), false},
	}
	for _, tt := range tests {
		err := ValidReplyCode(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ValidReplyCode(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && len(err.Error()) > 150 {
			t.Errorf("error for a long text is not truncated: %q", err)
		}
	}
}

// A realistic Postfix session encodes and decodes through the framing and
// payload codecs without a byte changing.
func TestPostfixSessionRoundTrip(t *testing.T) {
	var stream []byte
	stream = AppendPacket(stream, CmdOptNeg, OptNeg{Version: 6, Actions: 0x1FF, Protocol: 0x1FFFFF}.Append(nil))
	stream = AppendPacket(stream, CmdMacro, Macro{Cmd: CmdConnect, Pairs: []string{"j", "mx.example.org", "{daemon_name}", "mx"}}.Append(nil))
	stream = AppendPacket(stream, CmdConnect, Connect{Hostname: "client.example", Family: FamilyInet, Port: 40000, Address: "198.51.100.7"}.Append(nil))
	stream = AppendPacket(stream, CmdMacro, []byte{CmdHelo})
	stream = AppendPacket(stream, CmdHelo, AppendStrings(nil, "client.example"))
	stream = AppendPacket(stream, CmdMail, AppendStrings(nil, "<a@example.org>", "SIZE=100"))
	stream = AppendPacket(stream, CmdRcpt, AppendStrings(nil, "<b@example.net>"))
	stream = AppendPacket(stream, CmdData)
	stream = AppendPacket(stream, CmdMacro, Macro{Cmd: CmdHeader, Pairs: []string{"i", "4XyZ1"}}.Append(nil))
	stream = AppendPacket(stream, CmdHeader, Header{Name: "Subject", Value: " hi\n\tthere"}.AppendHeader(nil))
	stream = AppendPacket(stream, CmdEOH)
	stream = AppendPacket(stream, CmdBody, []byte("hello\r\n"))
	stream = AppendPacket(stream, CmdEOB)
	stream = AppendPacket(stream, CmdAbort)
	stream = AppendPacket(stream, CmdQuit)

	r := NewReader(bytes.NewReader(stream), MDS64K)
	var out []byte
	for {
		p, err := r.ReadPacket()
		if err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		var data []byte
		switch p.Code {
		case CmdOptNeg:
			o, err := ParseOptNeg(p.Data)
			if err != nil {
				t.Fatal(err)
			}
			data = o.Append(nil)
		case CmdMacro:
			m, err := ParseMacro(p.Data)
			if err != nil {
				t.Fatal(err)
			}
			data = m.Append(nil)
		case CmdConnect:
			c, err := ParseConnect(p.Data)
			if err != nil {
				t.Fatal(err)
			}
			data = c.Append(nil)
		case CmdHelo:
			s, err := ParseString(p.Code, p.Data)
			if err != nil {
				t.Fatal(err)
			}
			data = AppendStrings(nil, s)
		case CmdMail, CmdRcpt:
			ss, err := ParseArgv(p.Code, p.Data)
			if err != nil {
				t.Fatal(err)
			}
			data = AppendStrings(nil, ss...)
		case CmdHeader:
			h, err := ParseHeader(p.Code, p.Data)
			if err != nil {
				t.Fatal(err)
			}
			data = h.AppendHeader(nil)
		default:
			data = p.Data
		}
		out = AppendPacket(out, p.Code, data)
	}
	if !bytes.Equal(out, stream) {
		t.Fatalf("session changed:\n got %q\nwant %q", out, stream)
	}
}
