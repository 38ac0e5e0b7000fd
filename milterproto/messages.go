// messages.go: typed payloads of every command and reply, decoded without
// loss (raw bytes kept) and encoded back to the same bytes.

package milterproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/mailmux/mailmux/internal/arena"
	"strings"
)

// ParseError describes a malformed packet payload.
type ParseError struct {
	Code   byte   // the packet's command or reply code
	Reason string // what is wrong
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("milter: malformed %s packet: %s", CodeName(e.Code), e.Reason)
}

func perr(code byte, format string, args ...any) error {
	return &ParseError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// CodeName names a command or reply code for logs, e.g. "SMFIC_RCPT ('R')".
// Command and reply codes overlap only at 'O' (OPTNEG); use CmdName or
// RespName when the direction is known.
func CodeName(c byte) string {
	if n, ok := cmdNames[c]; ok {
		return n
	}
	if n, ok := respNames[c]; ok {
		return n
	}
	return fmt.Sprintf("unknown code 0x%02x", c)
}

// CmdName names an MTA-to-filter command code.
func CmdName(c byte) string {
	if n, ok := cmdNames[c]; ok {
		return n
	}
	return fmt.Sprintf("unknown command 0x%02x", c)
}

// RespName names a filter-to-MTA reply code.
func RespName(c byte) string {
	if n, ok := respNames[c]; ok {
		return n
	}
	return fmt.Sprintf("unknown reply 0x%02x", c)
}

var cmdNames = map[byte]string{
	CmdAbort: "SMFIC_ABORT", CmdBody: "SMFIC_BODY", CmdConnect: "SMFIC_CONNECT",
	CmdMacro: "SMFIC_MACRO", CmdEOB: "SMFIC_BODYEOB", CmdHelo: "SMFIC_HELO",
	CmdQuitNC: "SMFIC_QUIT_NC", CmdHeader: "SMFIC_HEADER", CmdMail: "SMFIC_MAIL",
	CmdEOH: "SMFIC_EOH", CmdOptNeg: "SMFIC_OPTNEG", CmdQuit: "SMFIC_QUIT",
	CmdRcpt: "SMFIC_RCPT", CmdData: "SMFIC_DATA", CmdUnknown: "SMFIC_UNKNOWN",
}

var respNames = map[byte]string{
	RespAddRcpt: "SMFIR_ADDRCPT", RespDelRcpt: "SMFIR_DELRCPT", RespAddRcptPar: "SMFIR_ADDRCPT_PAR",
	RespShutdown: "SMFIR_SHUTDOWN", RespAccept: "SMFIR_ACCEPT", RespReplBody: "SMFIR_REPLBODY",
	RespContinue: "SMFIR_CONTINUE", RespDiscard: "SMFIR_DISCARD", RespChgFrom: "SMFIR_CHGFROM",
	RespConnFail: "SMFIR_CONN_FAIL", RespAddHeader: "SMFIR_ADDHEADER", RespInsHeader: "SMFIR_INSHEADER",
	RespSetSymList: "SMFIR_SETSYMLIST", RespChgHeader: "SMFIR_CHGHEADER", RespProgress: "SMFIR_PROGRESS",
	RespQuarantine: "SMFIR_QUARANTINE", RespReject: "SMFIR_REJECT", RespSkip: "SMFIR_SKIP",
	RespTempfail: "SMFIR_TEMPFAIL", RespReplyCode: "SMFIR_REPLYCODE",
}

// IsCommand reports whether c is a known SMFIC_* code.
func IsCommand(c byte) bool { _, ok := cmdNames[c]; return ok }

// SplitStrings splits data made of NUL-terminated strings. Every string
// must be terminated; empty data gives no strings.
func SplitStrings(code byte, data []byte) ([]string, error) {
	return splitStrings(code, data, nil)
}

// splitStrings is SplitStrings taking the result's slice from a (nil:
// its own).
func splitStrings(code byte, data []byte, a *Strings) ([]string, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if data[len(data)-1] != 0 {
		return nil, perr(code, "string not NUL-terminated")
	}
	n := bytes.Count(data, []byte{0})
	var out []string
	if a != nil {
		out = a.take(n)
	} else {
		out = make([]string, 0, n)
	}
	// One copy of the payload, the strings slices of it: two allocations
	// per packet instead of one per string (Postfix sends ~70 macro
	// strings per message).
	all := string(data)
	for len(all) > 0 {
		i := strings.IndexByte(all, 0)
		out = append(out, all[:i])
		all = all[i+1:]
	}
	return out, nil
}

// AppendStrings appends each string followed by a NUL.
func AppendStrings(dst []byte, ss ...string) []byte {
	for _, s := range ss {
		dst = append(dst, s...)
		dst = append(dst, 0)
	}
	return dst
}

func cstr(code byte, data []byte, what string) (string, []byte, error) {
	i := bytes.IndexByte(data, 0)
	if i < 0 {
		return "", nil, perr(code, "%s not NUL-terminated", what)
	}
	return string(data[:i]), data[i+1:], nil
}

// SymList is one macro list of the OPTNEG reply: a stage and the macro
// names as sent (space separated, e.g. "{auth_authen} i").
type SymList struct {
	Stage  Stage
	Macros string
}

// OptNeg is the payload of SMFIC_OPTNEG and of its reply.
type OptNeg struct {
	Version  uint32
	Actions  Action
	Protocol Protocol
	SymLists []SymList // reply only (v6 SETSYMLIST)
}

// ParseOptNeg decodes an OPTNEG payload: 12 bytes, then symlist entries.
func ParseOptNeg(data []byte) (OptNeg, error) {
	if len(data) < 12 {
		return OptNeg{}, perr(CmdOptNeg, "%d bytes, need 12", len(data))
	}
	o := OptNeg{
		Version:  binary.BigEndian.Uint32(data),
		Actions:  Action(binary.BigEndian.Uint32(data[4:])),
		Protocol: Protocol(binary.BigEndian.Uint32(data[8:])),
	}
	rest := data[12:]
	for len(rest) > 0 {
		if len(rest) < 5 {
			return o, perr(CmdOptNeg, "truncated macro list")
		}
		st := Stage(binary.BigEndian.Uint32(rest))
		names, r, err := cstr(CmdOptNeg, rest[4:], "macro list")
		if err != nil {
			return o, err
		}
		o.SymLists = append(o.SymLists, SymList{Stage: st, Macros: names})
		rest = r
	}
	return o, nil
}

// Append appends the encoded payload to dst.
func (o OptNeg) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, o.Version)
	dst = binary.BigEndian.AppendUint32(dst, uint32(o.Actions))
	dst = binary.BigEndian.AppendUint32(dst, uint32(o.Protocol))
	for _, s := range o.SymLists {
		dst = binary.BigEndian.AppendUint32(dst, uint32(s.Stage))
		dst = AppendStrings(dst, s.Macros)
	}
	return dst
}

// Macro is the payload of SMFIC_MACRO: the command the macros belong to and
// the name/value pairs in order, names as sent ("i", "{daemon_name}").
type Macro struct {
	Cmd   byte
	Pairs []string // name, value, name, value, …
}

// ParseMacro decodes a MACRO payload. An empty pair list is valid; an odd
// number of strings is an error.
func ParseMacro(data []byte) (Macro, error) { return parseMacro(data, nil) }

// Strings hands out the string lists of parsed packets from arrays it
// keeps (internal/arena), one allocation for many packets instead of one
// each: for a reader of many small packets (an MTA's macros before every
// command). A list stays valid; nothing is reused. The zero value is
// ready; not for concurrent use.
type Strings struct{ a arena.Arena[string] }

// stringsChunk is the size of Strings' arrays (Postfix sends about 70
// macro strings per message: two arrays, 1 KiB each).
const stringsChunk = 64

// take returns an empty list with room for n strings (no more: an
// append beyond it reallocates).
func (a *Strings) take(n int) []string {
	if a.a.Chunk == 0 {
		a.a.Chunk = stringsChunk
	}
	return a.a.Take(n)
}

// ParseMacro is the package's ParseMacro with the list of strings from a.
func (a *Strings) ParseMacro(data []byte) (Macro, error) { return parseMacro(data, a) }

func parseMacro(data []byte, a *Strings) (Macro, error) {
	if len(data) < 1 {
		return Macro{}, perr(CmdMacro, "no command code")
	}
	ss, err := splitStrings(CmdMacro, data[1:], a)
	if err != nil {
		return Macro{}, err
	}
	if len(ss)%2 != 0 {
		return Macro{}, perr(CmdMacro, "odd number of strings (%d): name without value", len(ss))
	}
	return Macro{Cmd: data[0], Pairs: ss}, nil
}

// Append appends the encoded payload to dst.
func (m Macro) Append(dst []byte) []byte {
	dst = append(dst, m.Cmd)
	return AppendStrings(dst, m.Pairs...)
}

// Connect is the payload of SMFIC_CONNECT. Port and Address are absent for
// FamilyUnknown. For FamilyUnix the port is present on the wire (0).
type Connect struct {
	Hostname string
	Family   byte
	Port     uint16
	Address  string
}

// ParseConnect decodes a CONNECT payload.
func ParseConnect(data []byte) (Connect, error) {
	host, rest, err := cstr(CmdConnect, data, "hostname")
	if err != nil {
		return Connect{}, err
	}
	if len(rest) < 1 {
		return Connect{}, perr(CmdConnect, "no address family")
	}
	c := Connect{Hostname: host, Family: rest[0]}
	rest = rest[1:]
	switch c.Family {
	case FamilyUnknown:
		return c, nil // anything after is ignored, as libmilter does
	case FamilyUnix, FamilyInet, FamilyInet6:
	default:
		return Connect{}, perr(CmdConnect, "unknown address family 0x%02x", c.Family)
	}
	if len(rest) < 2 {
		return Connect{}, perr(CmdConnect, "no port")
	}
	c.Port = binary.BigEndian.Uint16(rest)
	c.Address, _, err = cstr(CmdConnect, rest[2:], "address")
	if err != nil {
		return Connect{}, err
	}
	return c, nil
}

// Append appends the encoded payload to dst.
func (c Connect) Append(dst []byte) []byte {
	dst = AppendStrings(dst, c.Hostname)
	dst = append(dst, c.Family)
	if c.Family == FamilyUnknown {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, c.Port)
	return AppendStrings(dst, c.Address)
}

// ParseString decodes a payload made of one NUL-terminated string (HELO,
// UNKNOWN, REPLYCODE, ADDRCPT, DELRCPT, QUARANTINE). Bytes after the first
// NUL are ignored, as libmilter does.
func ParseString(code byte, data []byte) (string, error) {
	s, _, err := cstr(code, data, "string")
	return s, err
}

// ParseArgv decodes a MAIL or RCPT payload: the address as given, then one
// string per ESMTP parameter. At least the address must be present.
func ParseArgv(code byte, data []byte) ([]string, error) {
	ss, err := SplitStrings(code, data)
	if err != nil {
		return nil, err
	}
	if len(ss) == 0 {
		return nil, perr(code, "no address")
	}
	return ss, nil
}

// Header is the payload of SMFIC_HEADER and SMFIR_ADDHEADER, and with an
// index of SMFIR_INSHEADER and SMFIR_CHGHEADER.
type Header struct {
	Index uint32 // INSHEADER, CHGHEADER only
	Name  string
	Value string // raw: folded lines joined by "\n", leading space as sent
}

// ParseHeader decodes a HEADER or ADDHEADER payload (name, value).
func ParseHeader(code byte, data []byte) (Header, error) {
	i := bytes.IndexByte(data, 0)
	if i < 0 {
		return Header{}, perr(code, "%s not NUL-terminated", "header name")
	}
	j := bytes.IndexByte(data[i+1:], 0)
	if j < 0 {
		return Header{}, perr(code, "%s not NUL-terminated", "header value")
	}
	// One copy for name and value.
	both := string(data[:i+1+j])
	return Header{Name: both[:i], Value: both[i+1:]}, nil
}

// ParseIndexedHeader decodes an INSHEADER or CHGHEADER payload.
func ParseIndexedHeader(code byte, data []byte) (Header, error) {
	if len(data) < 4 {
		return Header{}, perr(code, "no index")
	}
	h, err := ParseHeader(code, data[4:])
	h.Index = binary.BigEndian.Uint32(data)
	return h, err
}

// AppendHeader appends a (name, value) payload.
func (h Header) AppendHeader(dst []byte) []byte { return AppendStrings(dst, h.Name, h.Value) }

// AppendIndexed appends an (index, name, value) payload.
func (h Header) AppendIndexed(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, h.Index)
	return AppendStrings(dst, h.Name, h.Value)
}

// AddrArgs is the payload of SMFIR_CHGFROM and SMFIR_ADDRCPT_PAR: an
// address and optional ESMTP arguments (one space-separated string).
type AddrArgs struct {
	Addr    string
	Args    string
	HasArgs bool
}

// ParseAddrArgs decodes a CHGFROM or ADDRCPT_PAR payload.
func ParseAddrArgs(code byte, data []byte) (AddrArgs, error) {
	addr, rest, err := cstr(code, data, "address")
	if err != nil {
		return AddrArgs{}, err
	}
	a := AddrArgs{Addr: addr}
	if len(rest) > 0 {
		a.Args, _, err = cstr(code, rest, "arguments")
		if err != nil {
			return AddrArgs{}, err
		}
		a.HasArgs = true
	}
	return a, nil
}

// Append appends the encoded payload.
func (a AddrArgs) Append(dst []byte) []byte {
	dst = AppendStrings(dst, a.Addr)
	if a.HasArgs {
		dst = AppendStrings(dst, a.Args)
	}
	return dst
}

// ValidReplyCode checks the text of an SMFIR_REPLYCODE as Postfix does
// before it uses one (milter8.c; a text it calls "malformed" makes Postfix
// fail the milter that sent it). The text is one line or several separated
// by CR LF, with no NUL and no line terminator after the last line. Each
// line is a 4xx or 5xx code followed by '-' (every line but the last) or
// a space (the last line); every line has the same code; and a line whose
// text starts with a digit (an RFC 3463 enhanced status code) must start
// with the code's class: "550 4.7.1 ..." and a bare "550" are malformed.
func ValidReplyCode(text string) error {
	bad := func(why string) error {
		return fmt.Errorf("milter: reply code %q: %s", truncate(text, 40), why)
	}
	if strings.IndexByte(text, 0) >= 0 {
		return bad("contains a NUL")
	}
	rest := text
	for n := 1; ; n++ {
		line, next, more := strings.Cut(rest, "\r\n")
		if i := strings.IndexAny(line, "\r\n"); i >= 0 {
			return bad(fmt.Sprintf("line %d: bare CR or LF", n))
		}
		if len(line) < 3 || (line[0] != '4' && line[0] != '5') ||
			line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' {
			return bad(fmt.Sprintf("line %d does not start with a 4xx or 5xx code", n))
		}
		if line[:3] != text[:3] {
			return bad(fmt.Sprintf("line %d has code %s, the first line %s", n, line[:3], text[:3]))
		}
		sep := byte(' ')
		if more {
			sep = '-'
		}
		if len(line) < 4 || line[3] != sep {
			return bad(fmt.Sprintf("line %d: code not followed by %q", n, sep))
		}
		if len(line) > 4 && line[4] >= '0' && line[4] <= '9' && line[4] != line[0] {
			return bad(fmt.Sprintf("line %d: enhanced status code class %c does not match the reply's %c", n, line[4], line[0]))
		}
		if !more {
			return nil
		}
		if next == "" {
			return bad("ends with a line terminator")
		}
		rest = next
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
