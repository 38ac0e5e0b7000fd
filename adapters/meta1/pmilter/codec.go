// codec.go: the byte-level codec of the MeTA1 policy-milter (pmilter)
// protocol as MODELLED by this project.
//
// PROVISIONAL AND UNVERIFIED. MeTA1's wire format (include/sm/pmilter.h,
// librcbr) was not available when this was written. Every byte-level
// decision below (framing, byte order, record types, field tags, reply
// codes, stage ids, macro ids, header-modification types) is a project
// choice modelled on what is known of MeTA1's semantics (see
// docs/meta1.md); none of it has been checked against a real MeTA1 smtps,
// and nothing here is claimed to be byte-compatible with one. All of those
// decisions sit in the one table below ("THE TABLE"), so that only this
// file has to change once MeTA1's headers can be read.
//
// The model ("RCB-like"), every integer in byteOrder:
//
//	record := uint32 total length (including these 4 bytes) , entry*
//	entry  := uint32 value length , uint32 tag , value
//
// The first entry of a record is TagProtVer (uint32 protocol version), the
// second is the record type (a RT* tag) whose value is the session id
// (empty for connection-level records), then the record's fields.
//
// Tunables and defaults: DefaultMaxRecord (1 MiB) is the largest record
// accepted; ChunkSize (64 KiB) the largest message chunk sent.

package pmilter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// ======================= THE TABLE (provisional, unverified) =======================
//
// Everything byte-level lives here. Values are project choices, not MeTA1's.

// byteOrder: ASSUMPTION (MeTA1's librcb may use host order).
var byteOrder = binary.BigEndian

// Framing, version, record types, field tags, codes and ids: ASSUMPTIONS.
const (
	// Framing.
	lenSize      = 4       // bytes of a record's total length
	entryHdrSize = 8       // bytes of an entry's length and tag
	minRecord    = 4 + 2*8 // length + version entry header + type entry header
	// DefaultMaxRecord is the largest record accepted by default.
	DefaultMaxRecord = 1 << 20
	// ChunkSize is the largest message chunk in a record we send
	// (MeTA1's PMILTER_CHUNK_SIZE exists; its value is unknown).
	ChunkSize = 65536

	// ProtocolVersion is the version this model speaks (TagProtVer).
	ProtocolVersion uint32 = 2

	// TagProtVer opens every record (uint32 value).
	TagProtVer uint32 = 0x0001

	// Record types, smtps -> pmilter (the value is the session id).
	RTNegotiate uint32 = 0x0101 // connection level: FCaps, FMacroMax
	RTConnect   uint32 = 0x0102 // FClientAddr, FClientPort, FHostname, FMacro*
	RTEhlo      uint32 = 0x0103 // FHelo, FMacro*
	RTMail      uint32 = 0x0104 // FAddr, FArg*, FMacro*
	RTRcpt      uint32 = 0x0105 // FAddr, FArg*, FRcptIdx, FMacro*
	RTData      uint32 = 0x0106 // FMacro*
	RTMsg       uint32 = 0x0107 // FChunk (raw CRLF message text)
	RTDot       uint32 = 0x0108 // FMacro*
	RTAbort     uint32 = 0x0109 // no reply
	RTClose     uint32 = 0x010A // no reply

	// Record types, pmilter -> smtps.
	RTNegReply   uint32 = 0x0201 // FCaps, FMacroList*
	RTReply      uint32 = 0x0202 // FReplyCode, FReplyText?, mods*
	RTMsgReplace uint32 = 0x0203 // FChunk: part of a replacement message, before its RTReply

	// Field tags.
	FCaps       uint32 = 0x0301 // uint32: bit (1<<stage) per stage
	FMacroMax   uint32 = 0x0302 // uint32: macros per stage smtps supports (PM_MACROS_MAX)
	FMacroList  uint32 = 0x0303 // uint32 stage, then uint32 macro ids
	FMacro      uint32 = 0x0304 // uint32 macro id, then the value bytes
	FClientAddr uint32 = 0x0305 // 4 or 16 address bytes
	FClientPort uint32 = 0x0306 // uint32
	FHostname   uint32 = 0x0307 // string
	FHelo       uint32 = 0x0308 // string
	FAddr       uint32 = 0x0309 // string, as given ("<a@b>")
	FArg        uint32 = 0x030A // string, one ESMTP parameter
	FRcptIdx    uint32 = 0x030B // uint32
	FChunk      uint32 = 0x030C // bytes
	FReplyCode  uint32 = 0x030D // uint32, a Reply* code
	FReplyText  uint32 = 0x030E // string: full SMTP reply, CRLF between lines
	FRcptAdd    uint32 = 0x030F // addr NUL args
	FRcptDel    uint32 = 0x0310 // uint32 rcpt index (0xFFFFFFFF unknown), then addr
	FHdrMod     uint32 = 0x0311 // uint32 type, uint32 position, name NUL value
	FMsgReplace uint32 = 0x0312 // uint32 total bytes of the replacement sent before

	// Reply codes (MeTA1's SMTP_R_* exist; their values are unknown).
	ReplyContinue uint32 = 0
	ReplyAccept   uint32 = 1
	ReplyReject   uint32 = 2 // 5xx
	ReplyTempfail uint32 = 3 // 4xx
	ReplyDiscard  uint32 = 4
	ReplySSD      uint32 = 5 // 421: shut the SMTP session down

	// Header modification types (MeTA1's hdrmoddef.h exists; values unknown).
	// Positions are 0-based among the message's headers as modified so far.
	HdrInsert  uint32 = 1 // insert before position
	HdrAppend  uint32 = 2 // append (position ignored)
	HdrReplace uint32 = 3 // replace the header at position
	HdrRemove  uint32 = 4 // remove the header at position

	// Stage ids (MeTA1's PM_SMST_* exist; values unknown).
	StageConnect uint32 = 0
	StageEhlo    uint32 = 1
	StageMail    uint32 = 2
	StageRcpt    uint32 = 3
	StageData    uint32 = 4
	StageDot     uint32 = 5
	NumStages           = 6

	// Macro ids (MeTA1's PMM_* exist; values unknown).
	MacroHostname       uint32 = 1
	MacroClientResolve  uint32 = 2
	MacroTLSVersion     uint32 = 3
	MacroTLSCipherSuite uint32 = 4
	MacroTLSCipherBits  uint32 = 5
	MacroTLSCertSubject uint32 = 6
	MacroTLSCertIssuer  uint32 = 7
	MacroTLSAlgBits     uint32 = 8
	MacroTLSVrfy        uint32 = 9
	MacroTLSCNSubject   uint32 = 10
	MacroTLSCNIssuer    uint32 = 11
	MacroAuthType       uint32 = 12
	MacroAuthAuthen     uint32 = 13
	MacroAuthAuthor     uint32 = 14
	MacroTaid           uint32 = 15
	MacroMsgid          uint32 = 16
	MacroHopCount       uint32 = 17
)

// macroIDs maps the canonical MeTA1 macro names (package macros) to ids.
var macroIDs = map[string]uint32{
	"hostname": MacroHostname, "client_resolve": MacroClientResolve,
	"tls_version": MacroTLSVersion, "tls_cipher_suite": MacroTLSCipherSuite,
	"tls_cipher_bits": MacroTLSCipherBits, "tls_cert_subject": MacroTLSCertSubject,
	"tls_cert_issuer": MacroTLSCertIssuer, "tls_alg_bits": MacroTLSAlgBits,
	"tls_vrfy": MacroTLSVrfy, "tls_cn_subject": MacroTLSCNSubject, "tls_cn_issuer": MacroTLSCNIssuer,
	"auth_type": MacroAuthType, "auth_authen": MacroAuthAuthen, "auth_author": MacroAuthAuthor,
	"taid": MacroTaid, "msgid": MacroMsgid, "c": MacroHopCount,
}

// ===================================== END OF THE TABLE =====================================

// MacroID returns the id of a canonical MeTA1 macro name.
func MacroID(name string) (uint32, bool) { id, ok := macroIDs[name]; return id, ok }

// MacroName returns the canonical name of a macro id.
func MacroName(id uint32) (string, bool) {
	for n, i := range macroIDs {
		if i == id {
			return n, true
		}
	}
	return "", false
}

// Entry is one field of a record.
type Entry struct {
	Tag uint32
	Val []byte
}

// Record is one pmilter message: its type, the SMTP session it belongs to
// and its fields in order.
type Record struct {
	Version uint32
	Type    uint32
	Session string
	Entries []Entry
}

// Errors of decoding. A *FrameError means the byte stream cannot be
// followed any more (the connection must end); a *RecordError concerns one
// well-framed record only.
var (
	ErrTruncated = errors.New("pmilter: record truncated by end of stream")
)

// FrameError is a record length that cannot be right.
type FrameError struct {
	Length uint32
	Max    int
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("pmilter: bogus record length %d (want %d to %d)", e.Length, minRecord, e.Max)
}

// RecordError is a malformed record inside a sound frame. Session is its
// session id when that much could be read.
type RecordError struct {
	Session    string
	HasSession bool
	Msg        string
}

func (e *RecordError) Error() string {
	if e.HasSession {
		return fmt.Sprintf("pmilter: session %q: bad record: %s", e.Session, e.Msg)
	}
	return "pmilter: bad record: " + e.Msg
}

// TypeName names a record type for logs.
func TypeName(t uint32) string {
	switch t {
	case RTNegotiate:
		return "negotiate"
	case RTConnect:
		return "connect"
	case RTEhlo:
		return "ehlo"
	case RTMail:
		return "mail"
	case RTRcpt:
		return "rcpt"
	case RTData:
		return "data"
	case RTMsg:
		return "msg"
	case RTDot:
		return "dot"
	case RTAbort:
		return "abort"
	case RTClose:
		return "close"
	case RTNegReply:
		return "neg-reply"
	case RTReply:
		return "reply"
	case RTMsgReplace:
		return "msg-replace"
	}
	return fmt.Sprintf("type(0x%04x)", t)
}

// ReadRecord reads one record. max bounds its total length (0: default).
// io.EOF means a clean end between records; ErrTruncated an end inside one.
func ReadRecord(r *bufio.Reader, max int) (Record, error) {
	if max <= 0 {
		max = DefaultMaxRecord
	}
	var hdr [lenSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return Record{}, ErrTruncated
		}
		return Record{}, err
	}
	n := byteOrder.Uint32(hdr[:])
	if n < minRecord || int64(n) > int64(max) {
		return Record{}, &FrameError{Length: n, Max: max}
	}
	buf := make([]byte, n-lenSize)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Record{}, ErrTruncated
		}
		return Record{}, err
	}
	return ParseRecord(buf)
}

// ParseRecord parses the entries of a record (everything after its length).
func ParseRecord(b []byte) (Record, error) {
	var rec Record
	i := 0
	for len(b) > 0 {
		if len(b) < entryHdrSize {
			return rec, rerr(rec, i, fmt.Sprintf("entry %d: %d stray bytes", i, len(b)))
		}
		l := byteOrder.Uint32(b)
		tag := byteOrder.Uint32(b[4:])
		b = b[entryHdrSize:]
		if uint64(l) > uint64(len(b)) {
			return rec, rerr(rec, i, fmt.Sprintf("entry %d (tag 0x%04x): length %d exceeds the %d bytes left", i, tag, l, len(b)))
		}
		val := b[:l:l]
		b = b[l:]
		switch i {
		case 0:
			if tag != TagProtVer || l != 4 {
				return rec, rerr(rec, i, fmt.Sprintf("first entry is tag 0x%04x length %d, want the protocol version", tag, l))
			}
			rec.Version = byteOrder.Uint32(val)
		case 1:
			rec.Type = tag
			rec.Session = string(val)
		default:
			rec.Entries = append(rec.Entries, Entry{Tag: tag, Val: val})
		}
		i++
	}
	if i < 2 {
		return rec, rerr(rec, i, "no record type")
	}
	return rec, nil
}

func rerr(rec Record, i int, msg string) *RecordError {
	return &RecordError{Session: rec.Session, HasSession: i >= 2, Msg: msg}
}

// Encoder appends records to a buffer.
type Encoder struct {
	buf   []byte
	start int
}

// Begin starts a record of type t for session.
func (e *Encoder) Begin(buf []byte, t uint32, session string) {
	e.buf = buf
	e.start = len(buf)
	e.buf = append(e.buf, 0, 0, 0, 0)
	e.Uint32(TagProtVer, ProtocolVersion)
	e.String(t, session)
}

// Bytes appends a field.
func (e *Encoder) Bytes(tag uint32, v []byte) {
	e.buf = byteOrder.AppendUint32(e.buf, uint32(len(v)))
	e.buf = byteOrder.AppendUint32(e.buf, tag)
	e.buf = append(e.buf, v...)
}

// String appends a string field.
func (e *Encoder) String(tag uint32, v string) {
	e.buf = byteOrder.AppendUint32(e.buf, uint32(len(v)))
	e.buf = byteOrder.AppendUint32(e.buf, tag)
	e.buf = append(e.buf, v...)
}

// Uint32 appends an integer field.
func (e *Encoder) Uint32(tag, v uint32) {
	e.buf = byteOrder.AppendUint32(e.buf, 4)
	e.buf = byteOrder.AppendUint32(e.buf, tag)
	e.buf = byteOrder.AppendUint32(e.buf, v)
}

// Uint32s appends a field of integers.
func (e *Encoder) Uint32s(tag uint32, vs ...uint32) {
	e.buf = byteOrder.AppendUint32(e.buf, uint32(4*len(vs)))
	e.buf = byteOrder.AppendUint32(e.buf, tag)
	for _, v := range vs {
		e.buf = byteOrder.AppendUint32(e.buf, v)
	}
}

// IntString appends a field of one integer then string bytes (FMacro,
// FRcptDel).
func (e *Encoder) IntString(tag, n uint32, s string) {
	e.buf = byteOrder.AppendUint32(e.buf, uint32(4+len(s)))
	e.buf = byteOrder.AppendUint32(e.buf, tag)
	e.buf = byteOrder.AppendUint32(e.buf, n)
	e.buf = append(e.buf, s...)
}

// End finishes the record and returns the buffer.
func (e *Encoder) End() []byte {
	byteOrder.PutUint32(e.buf[e.start:], uint32(len(e.buf)-e.start))
	return e.buf
}

// Field accessors. Each reports a malformed value as an error.

// AppendUint32 appends v to b in the model's byte order.
func AppendUint32(b []byte, v uint32) []byte { return byteOrder.AppendUint32(b, v) }

// Uint32Of decodes an integer field.
func Uint32Of(en Entry) (uint32, error) {
	if len(en.Val) != 4 {
		return 0, fmt.Errorf("field 0x%04x: length %d, want 4", en.Tag, len(en.Val))
	}
	return byteOrder.Uint32(en.Val), nil
}

// Uint32sOf decodes a field of integers.
func Uint32sOf(en Entry) ([]uint32, error) {
	if len(en.Val)%4 != 0 {
		return nil, fmt.Errorf("field 0x%04x: length %d is not a multiple of 4", en.Tag, len(en.Val))
	}
	out := make([]uint32, len(en.Val)/4)
	for i := range out {
		out[i] = byteOrder.Uint32(en.Val[4*i:])
	}
	return out, nil
}

// IntStringOf decodes an integer-then-string field.
func IntStringOf(en Entry) (uint32, string, error) {
	if len(en.Val) < 4 {
		return 0, "", fmt.Errorf("field 0x%04x: length %d, want at least 4", en.Tag, len(en.Val))
	}
	return byteOrder.Uint32(en.Val), string(en.Val[4:]), nil
}

// AddrOf decodes FClientAddr.
func AddrOf(en Entry) (netip.Addr, error) {
	a, ok := netip.AddrFromSlice(en.Val)
	if !ok {
		return a, fmt.Errorf("client address: %d bytes, want 4 or 16", len(en.Val))
	}
	return a.Unmap(), nil
}

// HdrMod is a decoded FHdrMod field.
type HdrMod struct {
	Type  uint32
	Pos   uint32
	Name  string
	Value string
}

// AppendHdrMod appends an FHdrMod field.
func (e *Encoder) AppendHdrMod(m HdrMod) {
	e.buf = byteOrder.AppendUint32(e.buf, uint32(8+len(m.Name)+1+len(m.Value)))
	e.buf = byteOrder.AppendUint32(e.buf, FHdrMod)
	e.buf = byteOrder.AppendUint32(e.buf, m.Type)
	e.buf = byteOrder.AppendUint32(e.buf, m.Pos)
	e.buf = append(e.buf, m.Name...)
	e.buf = append(e.buf, 0)
	e.buf = append(e.buf, m.Value...)
}

// HdrModOf decodes an FHdrMod field.
func HdrModOf(en Entry) (HdrMod, error) {
	if len(en.Val) < 9 {
		return HdrMod{}, fmt.Errorf("header modification: length %d, want at least 9", len(en.Val))
	}
	m := HdrMod{Type: byteOrder.Uint32(en.Val), Pos: byteOrder.Uint32(en.Val[4:])}
	rest := en.Val[8:]
	for i, c := range rest {
		if c == 0 {
			m.Name, m.Value = string(rest[:i]), string(rest[i+1:])
			return m, nil
		}
	}
	return HdrMod{}, errors.New("header modification: no NUL after the name")
}
