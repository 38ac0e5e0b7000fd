// gomilter_server_test.go: interop with an independent implementation:
// emersion/go-milter v0.5.0's SERVER (a protocol version 2 filter) as a
// backend of our client. go-milter's server has documented defects (quirks
// E1–E10 in /work/shared/reference/go-milter-libs.md §1.2); where one shows
// up the test asserts our side's correct behaviour and names the quirk.

package milter_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/textproto"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	backend "github.com/mailmux/mailmux/backends/milter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// gmTapConn records the bytes one end of a connection read and wrote.
type gmTapConn struct {
	net.Conn
	mu       sync.Mutex
	got, put []byte
}

func (c *gmTapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.got = append(c.got, b[:n]...)
	c.mu.Unlock()
	return n, err
}

// Write records before writing, so the bytes are in put before the peer
// can have read them.
func (c *gmTapConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.put = append(c.put, b...)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// packets returns the whole packets read (written) so far.
func (c *gmTapConn) packets(written bool) []mp.Packet {
	c.mu.Lock()
	b := bytes.Clone(c.got)
	if written {
		b = bytes.Clone(c.put)
	}
	c.mu.Unlock()
	ps, _ := mp.ParseFrames(b, 1<<30) // a trailing partial packet is ignored
	return ps
}

// waitCodes waits for the packets read (an answerless ABORT may still be
// in flight) to spell want, and returns what they spell.
func (c *gmTapConn) waitCodes(want string) string {
	var got string
	for end := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got = gmCodes(c.packets(false)); got == want || time.Now().After(end) {
			return got
		}
	}
}

func gmCodes(ps []mp.Packet) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteByte(p.Code)
	}
	return b.String()
}

// gmTapListener wraps every accepted connection in a gmTapConn.
type gmTapListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*gmTapConn
}

func (l *gmTapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &gmTapConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, tc)
	l.mu.Unlock()
	return tc, nil
}

func (l *gmTapListener) accepted() []*gmTapConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*gmTapConn(nil), l.conns...)
}

// gmRec is shared by every Milter instance go-milter creates for a server
// (E5: it swaps in a fresh instance after any non-continue response).
type gmRec struct {
	mu        sync.Mutex
	instances int
	events    []string
	macros    map[string]map[string]string // Modifier.Macros as seen by the last callback of a stage
	headers   [][2]string
	chunks    []int
	body      []byte

	rcpt   func(rcpt string, m *gomilter.Modifier) gomilter.Response // nil: continue
	header func(name string) gomilter.Response                       // nil: continue
	eom    func(m *gomilter.Modifier) gomilter.Response              // nil: accept
}

func (r *gmRec) note(stage string, m *gomilter.Modifier, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, stage+" "+fmt.Sprintf(format, args...))
	if r.macros == nil {
		r.macros = map[string]map[string]string{}
	}
	cp := map[string]string{}
	for k, v := range m.Macros {
		cp[k] = v
	}
	r.macros[stage] = cp
}

func (r *gmRec) snapshot() (events []string, macros map[string]map[string]string, instances int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	macros = map[string]map[string]string{}
	for k, v := range r.macros {
		macros[k] = v
	}
	return append([]string(nil), r.events...), macros, r.instances
}

type gmFilter struct{ r *gmRec }

func (f gmFilter) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	f.r.note("connect", m, "host=%s family=%s port=%d addr=%v", host, family, port, addr)
	return gomilter.RespContinue, nil
}

func (f gmFilter) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	f.r.note("helo", m, "%s", name)
	return gomilter.RespContinue, nil
}

func (f gmFilter) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	f.r.note("mail", m, "%s", from)
	return gomilter.RespContinue, nil
}

func (f gmFilter) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	f.r.note("rcpt", m, "%s", rcpt)
	if f.r.rcpt != nil {
		if resp := f.r.rcpt(rcpt, m); resp != nil {
			return resp, nil
		}
	}
	return gomilter.RespContinue, nil
}

func (f gmFilter) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	f.r.note("header", m, "%s", name)
	f.r.mu.Lock()
	f.r.headers = append(f.r.headers, [2]string{name, value})
	f.r.mu.Unlock()
	if f.r.header != nil {
		if resp := f.r.header(name); resp != nil {
			return resp, nil
		}
	}
	return gomilter.RespContinue, nil
}

func (f gmFilter) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	f.r.note("eoh", m, "%d", len(h))
	return gomilter.RespContinue, nil
}

func (f gmFilter) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	f.r.mu.Lock()
	f.r.chunks = append(f.r.chunks, len(chunk))
	f.r.body = append(f.r.body, chunk...)
	f.r.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (f gmFilter) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	f.r.note("eom", m, "")
	if f.r.eom != nil {
		return f.r.eom(m), nil
	}
	return gomilter.RespAccept, nil
}

func (f gmFilter) Abort(m *gomilter.Modifier) error {
	f.r.note("abort", m, "")
	return nil
}

// startGoMilter runs a go-milter server with the given masks.
func startGoMilter(t *testing.T, rec *gmRec, act gomilter.OptAction, proto gomilter.OptProtocol) (string, *gmTapListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &gmTapListener{Listener: ln}
	srv := &gomilter.Server{
		NewMilter: func() gomilter.Milter {
			rec.mu.Lock()
			rec.instances++
			rec.mu.Unlock()
			return gmFilter{rec}
		},
		Actions:  act,
		Protocol: proto,
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(tl) }()
	// Not srv.Close: it writes Server.closed unsynchronised while Serve may
	// read it (a data race under -race). Closing the listener ends Serve.
	t.Cleanup(func() {
		tl.Close()
		<-done
		for _, c := range tl.accepted() {
			c.Close()
		}
	})
	return ln.Addr().String(), tl
}

// gmV6Offer is what a v6 MTA (Postfix, Sendmail 8.14+) offers.
var gmV6Offer = pmult.Offer{
	Actions:       pmult.Actions(mp.ActAllMask) &^ pmult.ActSetSymList,
	Skip:          true,
	RejectedRcpts: true,
	LeadingSpace:  true,
	SymList:       true,
	Version:       6,
}

func gmOpen(t *testing.T, addr string, offer pmult.Offer) pmult.BackendSession {
	t.Helper()
	b := backend.New(backend.Config{Name: "gomilter", Network: "tcp", Address: addr,
		ConnectTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, EOMTimeout: 5 * time.Second})
	s, err := b.Open(context.Background(), pmult.OpenInfo{Offer: offer})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func gmSend(t *testing.T, s pmult.BackendSession, ev *pmult.Event) pmult.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.Handle(ctx, ev)
	if err != nil {
		t.Fatalf("send %s: %v", ev.Kind, err)
	}
	return r
}

func gmMacros(k pmult.Kind, pairs ...string) []pmult.MacroSet {
	return []pmult.MacroSet{{For: k, Pairs: pairs}}
}

func gmHas(events []string, want string) bool {
	for _, e := range events {
		if e == want {
			return true
		}
	}
	return false
}

// Negotiation with a v2 filter: version 2, NOUNKNOWN/NODATA forced, no v6
// action kept even though go-milter grants them (E1), its NO* bits honoured.
func TestGoMilterServerNegotiation(t *testing.T) {
	rec := &gmRec{eom: func(m *gomilter.Modifier) gomilter.Response {
		m.ChangeFrom("<bounce@example.org>") // E9 aside: CHGFROM is not a v2 action
		return gomilter.RespContinue
	}}
	v2 := gomilter.OptAddHeader | gomilter.OptChangeBody | gomilter.OptAddRcpt | gomilter.OptRemoveRcpt |
		gomilter.OptChangeHeader | gomilter.OptQuarantine
	addr, tl := startGoMilter(t, rec, v2|gomilter.OptChangeFrom|gomilter.OptAddRcptWithArgs, gomilter.OptNoHelo)
	s := gmOpen(t, addr, gmV6Offer)

	conns := tl.accepted()
	if len(conns) != 1 {
		t.Fatalf("%d connections", len(conns))
	}
	tap := conns[0]
	in := tap.packets(false)
	if len(in) == 0 || in[0].Code != mp.CmdOptNeg {
		t.Fatalf("first packet %q", gmCodes(in))
	}
	offer, _ := mp.ParseOptNeg(in[0].Data)
	wantProto := mp.ProtoNoEventMask | mp.ProtoNoReplyMask | mp.ProtoSkip | mp.ProtoRcptRej | mp.ProtoHdrLeadSpc
	if offer.Version != 6 || offer.Actions != mp.ActAllMask || offer.Protocol != wantProto {
		t.Errorf("our offer %+v, want version 6, actions 0x1ff, protocol 0x%x", offer, uint32(wantProto))
	}
	out := tap.packets(true)
	if len(out) != 1 || out[0].Code != mp.RespOptNeg {
		t.Fatalf("filter answered %q", gmCodes(out))
	}
	rep, _ := mp.ParseOptNeg(out[0].Data)
	// E1: go-milter always answers version 2 and grants its configured masks,
	// v6-only CHGFROM and ADDRCPT_PAR included.
	if rep.Version != 2 || rep.Actions != mp.ActV2Mask|mp.ActChangeFrom|mp.ActAddRcptPar {
		t.Errorf("go-milter answered %+v (E1 expected: version 2, actions 0xff)", rep)
	}

	caps := s.Caps()
	if caps.Actions != pmult.Actions(mp.ActV2Mask) {
		t.Errorf("caps actions 0x%x, want the v2 actions 0x3f only (no CHGFROM/ADDRCPT_PAR)", uint32(caps.Actions))
	}
	if want := pmult.Kinds(pmult.KindHelo, pmult.KindData, pmult.KindUnknown); caps.NoEvent != want {
		t.Errorf("caps NoEvent 0x%x, want helo+data+unknown 0x%x", uint32(caps.NoEvent), uint32(want))
	}
	// ABORT, QUIT and QUIT_NC never get a reply; everything else does (no NR_*).
	if want := pmult.Kinds(pmult.KindAbort, pmult.KindQuit, pmult.KindQuitNC); caps.NoReply != want {
		t.Errorf("caps NoReply 0x%x, want 0x%x (a v2 filter has no NR_*)", uint32(caps.NoReply), uint32(want))
	}
	if caps.Skip || caps.RejectedRcpts || caps.Macros != nil {
		t.Errorf("caps %+v: a v2 filter has no SKIP, RCPT_REJ or symlist", caps)
	}

	// NOHELO: answered locally; SMFIC_QUIT_NC does not exist at v2.
	gmSend(t, s, &pmult.Event{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Port: 25, Address: "192.0.2.9"})
	if r := gmSend(t, s, &pmult.Event{Kind: pmult.KindHelo, Arg: "h"}); r.Verdict != pmult.Continue {
		t.Errorf("helo %v", r.Verdict)
	}
	if _, err := s.Handle(context.Background(), &pmult.Event{Kind: pmult.KindQuitNC}); err == nil ||
		!strings.Contains(err.Error(), "version 6") {
		t.Errorf("QUIT_NC to a v2 filter: err %v, want a version error", err)
	}
	gmSend(t, s, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}})
	// A CHGFROM at EOM was not negotiated (v2): a protocol violation for us,
	// whatever go-milter granted itself.
	_, err := s.Handle(context.Background(), &pmult.Event{Kind: pmult.KindEOM})
	if err == nil || !strings.Contains(err.Error(), "protocol violation") {
		t.Errorf("CHGFROM from a v2 filter: err %v, want a protocol violation", err)
	}
	if codes := gmCodes(tap.packets(false)); strings.IndexByte(codes, mp.CmdHelo) >= 0 {
		t.Errorf("HELO sent despite NOHELO: %q", codes)
	}
}

// A v2 filter asking for an action the MTA did not offer is refused, as
// Sendmail refuses it (E1 makes go-milter ask regardless of the offer).
func TestGoMilterServerOverAskingRefused(t *testing.T) {
	addr, _ := startGoMilter(t, &gmRec{}, gomilter.OptAddHeader|gomilter.OptQuarantine, 0)
	offer := gmV6Offer
	offer.Actions = pmult.ActAddHeaders
	b := backend.New(backend.Config{Network: "tcp", Address: addr, ConnectTimeout: 5 * time.Second})
	s, err := b.Open(context.Background(), pmult.OpenInfo{Offer: offer})
	if err == nil {
		s.Close()
		t.Fatal("negotiation accepted a filter that asked for QUARANTINE, which was not offered")
	}
	if !strings.Contains(err.Error(), "not offered") {
		t.Errorf("err %v", err)
	}
}

// One full message: envelope with macros and ESMTP args, a per-recipient
// reject, DATA/UNKNOWN kept from the filter, headers, a large body, and
// every v2 edit at EOM.
func TestGoMilterServerMessage(t *testing.T) {
	rec := &gmRec{}
	rec.rcpt = func(rcpt string, m *gomilter.Modifier) gomilter.Response {
		switch rcpt {
		case "bad@example.com":
			return gomilter.RespReject
		case "code@example.com":
			return gomilter.NewResponseStr('y', "550 5.7.1 not here")
		}
		return nil
	}
	rec.eom = func(m *gomilter.Modifier) gomilter.Response {
		m.AddHeader("X-Added", "yes")
		m.ChangeHeader(1, "Subject", "changed")
		m.ChangeHeader(1, "X-Empty", "") // delete
		m.InsertHeader(0, "X-First", "first")
		m.AddRecipient("new@example.com")
		m.DeleteRecipient("bad@example.com")
		m.ReplaceBody([]byte("new body\r\nline 2\r\n"))
		m.Quarantine("held for review")
		m.AddHeader("X-Multi", "a\r\n\tb")
		return gomilter.RespAccept
	}
	all := gomilter.OptAddHeader | gomilter.OptChangeBody | gomilter.OptAddRcpt | gomilter.OptRemoveRcpt |
		gomilter.OptChangeHeader | gomilter.OptQuarantine
	addr, tl := startGoMilter(t, rec, all, 0)
	s := gmOpen(t, addr, gmV6Offer)

	want := func(ev *pmult.Event, v pmult.Verdict, text string) {
		t.Helper()
		r := gmSend(t, s, ev)
		if r.Verdict != v || r.Text != text || len(r.Edits) != 0 {
			t.Fatalf("%s: got %+v, want %v %q", ev.Kind, r, v, text)
		}
	}
	want(&pmult.Event{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Port: 1234,
		Address: "192.0.2.1", Macros: gmMacros(pmult.KindConnect, "j", "mx.example.org", "{daemon_name}", "mux")},
		pmult.Continue, "")
	want(&pmult.Event{Kind: pmult.KindHelo, Arg: "client.example",
		Macros: gmMacros(pmult.KindHelo, "{tls_version}", "TLSv1.3")}, pmult.Continue, "")
	mailArgs := []string{"<a@example.org>", "SIZE=100", "BODY=8BITMIME"}
	want(&pmult.Event{Kind: pmult.KindMail, Args: mailArgs, Macros: gmMacros(pmult.KindMail, "i", "QID1")},
		pmult.Continue, "")
	want(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<bad@example.com>"}}, pmult.Reject, "")
	want(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<code@example.com>"}}, pmult.Reject, "550 5.7.1 not here")
	want(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<good@example.com>", "NOTIFY=NEVER"}}, pmult.Continue, "")
	// E5: the per-recipient REJECT made go-milter swap in a new Milter
	// mid-transaction; our side just goes on with the next recipient.
	// (The 'y' reply to code@ does not: go-milter takes a custom response
	// for a continue.) go-milter swaps after writing the reply, so the
	// count is certain only once it has answered a later command, as it
	// has here.
	if _, _, inst := rec.snapshot(); inst != 2 {
		t.Errorf("go-milter instances after a RCPT reject: %d (E5 predicts 2)", inst)
	}
	// Forced NODATA/NOUNKNOWN: answered locally. The DATA macros still go
	// out, as Sendmail sends them (milter-protocol.md §10).
	want(&pmult.Event{Kind: pmult.KindData, Macros: gmMacros(pmult.KindData, "{data}", "1")}, pmult.Continue, "")
	want(&pmult.Event{Kind: pmult.KindUnknown, Arg: "XFOO bar"}, pmult.Continue, "")
	for _, h := range [][2]string{{"Subject", " hello"}, {"X-Folded", " line1\n\tline2"}, {"X-Tab", "\tvalue"},
		{"X-Empty", ""}, {"X-Two", "  two"}} {
		want(&pmult.Event{Kind: pmult.KindHeader, Name: h[0], Value: h[1]}, pmult.Continue, "")
	}
	want(&pmult.Event{Kind: pmult.KindEOH}, pmult.Continue, "")
	body := make([]byte, 70000)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	// Chunks as an MTA sends them (at most 65535 bytes; see
	// TestGoMilterServerOversizeBodyChunk for a larger one).
	want(&pmult.Event{Kind: pmult.KindBody, Chunk: body[:65535]}, pmult.Continue, "")
	want(&pmult.Event{Kind: pmult.KindBody, Chunk: body[65535:]}, pmult.Continue, "")

	r := gmSend(t, s, &pmult.Event{Kind: pmult.KindEOM})
	if r.Verdict != pmult.Accept {
		t.Errorf("EOM verdict %v, want accept", r.Verdict)
	}
	// Header values get the leading space go-milter (no HDR_LEADSPC) leaves
	// to the MTA, except the empty CHGHEADER value (delete). The body moves
	// last; CR LF became LF in go-milter (its ReplaceBody/AddHeader turn CRLF
	// into LF on purpose, for Postfix).
	wantEdits := []pmult.Edit{
		{Kind: pmult.EditAddHeader, Name: "X-Added", Value: " yes"},
		{Kind: pmult.EditChangeHeader, Index: 1, Name: "Subject", Value: " changed"},
		{Kind: pmult.EditChangeHeader, Index: 1, Name: "X-Empty", Value: ""},
		{Kind: pmult.EditInsertHeader, Index: 0, Name: "X-First", Value: " first"},
		{Kind: pmult.EditAddRcpt, Addr: "<new@example.com>"},
		{Kind: pmult.EditDelRcpt, Addr: "<bad@example.com>"},
		{Kind: pmult.EditQuarantine, Value: "held for review"},
		{Kind: pmult.EditAddHeader, Name: "X-Multi", Value: " a\n\tb"},
		{Kind: pmult.EditReplaceBody, Body: []byte("new body\nline 2\n")},
	}
	if !reflect.DeepEqual(r.Edits, wantEdits) {
		t.Errorf("edits\n got %+v\nwant %+v", r.Edits, wantEdits)
	}

	events, macros, _ := rec.snapshot()
	wantEvents := []string{
		"connect host=client.example family=tcp4 port=1234 addr=192.0.2.1",
		"helo client.example",
		"mail a@example.org", // E6: <> trimmed, ESMTP args dropped by go-milter
		"rcpt bad@example.com",
		"rcpt code@example.com",
		"rcpt good@example.com",
		"header Subject", "header X-Folded", "header X-Tab", "header X-Empty", "header X-Two",
		"eoh 5",
		"eom ",
	}
	if !reflect.DeepEqual(events, wantEvents) {
		t.Errorf("go-milter saw\n %q\nwant\n %q", events, wantEvents)
	}
	if m := macros["connect"]; m["j"] != "mx.example.org" || m["{daemon_name}"] != "mux" {
		t.Errorf("macros at connect %v", m)
	}
	// E3: each D packet replaces go-milter's macro map, so the CONNECT
	// macros are gone at HELO. We forwarded both sets (checked on the wire).
	if m := macros["helo"]; !reflect.DeepEqual(m, map[string]string{"{tls_version}": "TLSv1.3"}) {
		t.Errorf("macros at helo %v (E3 predicts only {tls_version})", m)
	}
	if m := macros["mail"]; m["i"] != "QID1" {
		t.Errorf("macros at mail %v", m)
	}
	// The DATA macros replaced the map before the first header (E3 again).
	if m := macros["header"]; !reflect.DeepEqual(m, map[string]string{"{data}": "1"}) {
		t.Errorf("macros at header %v", m)
	}
	rec.mu.Lock()
	headers, chunks, gotBody := rec.headers, rec.chunks, bytes.Clone(rec.body)
	rec.mu.Unlock()
	// Without HDR_LEADSPC exactly one leading space is removed (not a tab).
	wantHeaders := [][2]string{{"Subject", "hello"}, {"X-Folded", "line1\n\tline2"}, {"X-Tab", "\tvalue"},
		{"X-Empty", ""}, {"X-Two", " two"}}
	if !reflect.DeepEqual(headers, wantHeaders) {
		t.Errorf("headers seen %q, want %q", headers, wantHeaders)
	}
	if !reflect.DeepEqual(chunks, []int{65535, 70000 - 65535}) || !bytes.Equal(gotBody, body) {
		t.Errorf("body chunks %v (%d bytes, equal %v), want 65535+4465", chunks, len(gotBody), bytes.Equal(gotBody, body))
	}

	// The wire, as go-milter read it: macros verbatim before their command,
	// MAIL argv intact, DATA and UNKNOWN never sent (only the DATA macros).
	in := tl.accepted()[0].packets(false)
	if got, want := gmCodes(in), "ODCDHDMRRRDLLLLLNBBE"; got != want {
		t.Errorf("commands on the wire %q, want %q", got, want)
	}
	for _, p := range in {
		switch p.Code {
		case mp.CmdMail:
			if args, _ := mp.ParseArgv(p.Code, p.Data); !reflect.DeepEqual(args, mailArgs) {
				t.Errorf("MAIL on the wire %q, want %q", args, mailArgs)
			}
		case mp.CmdMacro:
			m, _ := mp.ParseMacro(p.Data)
			if m.Cmd == 'C' && !reflect.DeepEqual(m.Pairs, []string{"j", "mx.example.org", "{daemon_name}", "mux"}) {
				t.Errorf("CONNECT macros on the wire %q", m.Pairs)
			}
		case mp.CmdConnect:
			c, _ := mp.ParseConnect(p.Data)
			if c != (mp.Connect{Hostname: "client.example", Family: '4', Port: 1234, Address: "192.0.2.1"}) {
				t.Errorf("CONNECT on the wire %+v", c)
			}
		}
	}
}

// CONNECT with family 'L': we send the libmilter layout (2 port bytes, 0,
// then the path). E7: go-milter reads a port only for '4'/'6', so for 'L'
// the two NUL port bytes become the start of the address, which reads as
// "" and net.ParseIP("") is nil: the socket path is lost on go-milter's
// side. The stream stays in sync (HELO afterwards works).
func TestGoMilterServerUnixConnect(t *testing.T) {
	rec := &gmRec{}
	addr, tl := startGoMilter(t, rec, 0, 0)
	s := gmOpen(t, addr, gmV6Offer)
	ev := &pmult.Event{Kind: pmult.KindConnect, Hostname: "localhost", Family: 'L', Address: "/var/run/mta.sock"}
	if r := gmSend(t, s, ev); r.Verdict != pmult.Continue {
		t.Fatalf("connect %v", r.Verdict)
	}
	if r := gmSend(t, s, &pmult.Event{Kind: pmult.KindHelo, Arg: "after"}); r.Verdict != pmult.Continue {
		t.Fatalf("helo %v", r.Verdict)
	}
	in := tl.accepted()[0].packets(false)
	if len(in) < 2 || in[1].Code != mp.CmdConnect {
		t.Fatalf("packets %q", gmCodes(in))
	}
	if want := []byte("localhost\x00L\x00\x00/var/run/mta.sock\x00"); !bytes.Equal(in[1].Data, want) {
		t.Errorf("CONNECT payload %q, want libmilter's %q", in[1].Data, want)
	}
	events, _, _ := rec.snapshot()
	want := []string{"connect host=localhost family=unix port=0 addr=<nil>", "helo after"}
	if !reflect.DeepEqual(events, want) {
		t.Errorf("go-milter saw %q, want %q (E7: path lost)", events, want)
	}
}

// ABORT, then a new MAIL on the same connection, twice (Postfix sends
// ABORT after every message).
func TestGoMilterServerAbortReuse(t *testing.T) {
	rec := &gmRec{}
	n := 0
	rec.eom = func(m *gomilter.Modifier) gomilter.Response {
		n++
		m.AddHeader("X-Msg", fmt.Sprint(n))
		return gomilter.RespContinue
	}
	addr, tl := startGoMilter(t, rec, gomilter.OptAddHeader, 0)
	s := gmOpen(t, addr, gmV6Offer)
	gmSend(t, s, &pmult.Event{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Port: 25, Address: "192.0.2.2",
		Macros: gmMacros(pmult.KindConnect, "j", "mx")})
	gmSend(t, s, &pmult.Event{Kind: pmult.KindHelo, Arg: "h"})
	gmSend(t, s, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}})
	gmSend(t, s, &pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<b@example.com>"}})
	gmSend(t, s, &pmult.Event{Kind: pmult.KindHeader, Name: "Subject", Value: " first"})
	if r := gmSend(t, s, &pmult.Event{Kind: pmult.KindAbort}); r.Verdict != pmult.Continue {
		t.Fatalf("abort %v", r.Verdict)
	}
	for i := 1; i <= 2; i++ {
		qid := fmt.Sprintf("Q%d", i)
		if r := gmSend(t, s, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<c@example.org>"},
			Macros: gmMacros(pmult.KindMail, "i", qid)}); r.Verdict != pmult.Continue {
			t.Fatalf("mail %d after abort: %v", i, r.Verdict)
		}
		_, macros, _ := rec.snapshot()
		if !reflect.DeepEqual(macros["mail"], map[string]string{"i": qid}) {
			t.Errorf("macros at mail %d: %v", i, macros["mail"])
		}
		gmSend(t, s, &pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<d@example.com>"}})
		gmSend(t, s, &pmult.Event{Kind: pmult.KindHeader, Name: "Subject", Value: " again"})
		gmSend(t, s, &pmult.Event{Kind: pmult.KindEOH})
		gmSend(t, s, &pmult.Event{Kind: pmult.KindBody, Chunk: []byte("x\r\n")})
		r := gmSend(t, s, &pmult.Event{Kind: pmult.KindEOM})
		want := []pmult.Edit{{Kind: pmult.EditAddHeader, Name: "X-Msg", Value: " " + fmt.Sprint(i)}}
		if r.Verdict != pmult.Continue || !reflect.DeepEqual(r.Edits, want) {
			t.Errorf("message %d EOM %+v", i, r)
		}
		gmSend(t, s, &pmult.Event{Kind: pmult.KindAbort})
	}
	if c := tl.accepted(); len(c) != 1 {
		t.Errorf("%d connections, want 1 (reused after ABORT)", len(c))
	}
	events, _, _ := rec.snapshot()
	if !gmHas(events, "abort ") || !gmHas(events, "mail c@example.org") {
		t.Errorf("go-milter saw %q", events)
	}
	if got := tl.accepted()[0].waitCodes("ODCHMRLADMRLNBEADMRLNBEA"); got != "ODCHMRLADMRLNBEADMRLNBEA" {
		t.Errorf("commands on the wire %q", got)
	}
}

// E9: go-milter's Modifier writes edits from any callback. A QUARANTINE
// before EOM is kept and reported at EOM (Postfix allows it); any other
// edit before EOM is a protocol violation for us.
func TestGoMilterServerEditOutsideEOM(t *testing.T) {
	t.Run("quarantine at RCPT", func(t *testing.T) {
		rec := &gmRec{rcpt: func(rcpt string, m *gomilter.Modifier) gomilter.Response {
			m.Quarantine("early")
			return nil
		}}
		rec.eom = func(m *gomilter.Modifier) gomilter.Response {
			m.AddHeader("X-Late", "1")
			return gomilter.RespContinue
		}
		addr, _ := startGoMilter(t, rec, gomilter.OptQuarantine|gomilter.OptAddHeader, 0)
		s := gmOpen(t, addr, gmV6Offer)
		gmSend(t, s, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@b>"}})
		if r := gmSend(t, s, &pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<c@d>"}}); r.Verdict != pmult.Continue || len(r.Edits) != 0 {
			t.Fatalf("rcpt %+v", r)
		}
		r := gmSend(t, s, &pmult.Event{Kind: pmult.KindEOM})
		want := []pmult.Edit{{Kind: pmult.EditQuarantine, Value: "early"}, {Kind: pmult.EditAddHeader, Name: "X-Late", Value: " 1"}}
		if !reflect.DeepEqual(r.Edits, want) {
			t.Errorf("edits %+v, want %+v", r.Edits, want)
		}
	})
	t.Run("add header at RCPT", func(t *testing.T) {
		rec := &gmRec{rcpt: func(rcpt string, m *gomilter.Modifier) gomilter.Response {
			m.AddHeader("X-Early", "1")
			return nil
		}}
		addr, _ := startGoMilter(t, rec, gomilter.OptAddHeader, 0)
		s := gmOpen(t, addr, gmV6Offer)
		gmSend(t, s, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@b>"}})
		_, err := s.Handle(context.Background(), &pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<c@d>"}})
		if err == nil || !strings.Contains(err.Error(), "protocol violation") {
			t.Errorf("ADDHEADER at RCPT: err %v, want a protocol violation", err)
		}
	})
}

// A BODY event larger than 65535 bytes (the front end accepts packets up
// to MaxData, and EOB data becomes one body event) is split by our client
// into several SMFIC_BODY packets, each of which the filter answers; the
// client reads only one answer, so the next answer read (here the EOM's)
// is the stale CONTINUE of the second chunk and the stream is out of step.
func TestGoMilterServerOversizeBodyChunk(t *testing.T) {
	rec := &gmRec{eom: func(m *gomilter.Modifier) gomilter.Response {
		m.AddHeader("X-Done", "1")
		return gomilter.RespAccept
	}}
	addr, _ := startGoMilter(t, rec, gomilter.OptAddHeader, 0)
	s := gmOpen(t, addr, gmV6Offer)
	gmSend(t, s, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@b>"}})
	gmSend(t, s, &pmult.Event{Kind: pmult.KindBody, Chunk: bytes.Repeat([]byte("x"), 70000)})
	r := gmSend(t, s, &pmult.Event{Kind: pmult.KindEOM})
	want := []pmult.Edit{{Kind: pmult.EditAddHeader, Name: "X-Done", Value: " 1"}}
	if r.Verdict != pmult.Accept || !reflect.DeepEqual(r.Edits, want) {
		t.Errorf("EOM after a 70000-byte body event: %+v, want accept with %+v", r, want)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.body) != 70000 {
		t.Errorf("filter got %d body bytes", len(rec.body))
	}
}
