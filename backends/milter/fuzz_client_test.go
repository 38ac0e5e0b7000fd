// fuzz_client_test.go: sequences of backend reply packets, built from the
// fuzz input, through the backend client for a whole session. Invariants:
// no panic, every call returns within bounded time, replies are well
// formed (a known verdict; edits only at end of message and only those the
// filter negotiated), and no goroutine or connection is left after the
// session.

package milter

import (
	"context"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// cfz reads the fuzz input; past its end every byte is 0.
type cfz struct{ b []byte }

func (f *cfz) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}
func (f *cfz) u16() uint16 { return uint16(f.byte()) | uint16(f.byte())<<8 }
func (f *cfz) u32() uint32 { return uint32(f.u16()) | uint32(f.u16())<<16 }
func (f *cfz) bytes(n int) []byte {
	n = min(n, len(f.b))
	out := f.b[:n]
	f.b = f.b[n:]
	return out
}
func (f *cfz) str() string { return string(f.bytes(int(f.byte() % 24))) }

var replyCodes = []byte{mp.RespContinue, mp.RespAccept, mp.RespReject, mp.RespTempfail, mp.RespDiscard,
	mp.RespReplyCode, mp.RespSkip, mp.RespProgress, mp.RespAddHeader, mp.RespInsHeader, mp.RespChgHeader,
	mp.RespAddRcpt, mp.RespDelRcpt, mp.RespAddRcptPar, mp.RespChgFrom, mp.RespReplBody, mp.RespQuarantine,
	mp.RespShutdown, mp.RespOptNeg, mp.RespConnFail, mp.RespSetSymList}

// script builds the filter's whole output from the input: mostly a valid
// OPTNEG reply first, then reply packets, mostly well formed.
func script(f *cfz) []byte {
	var out []byte
	if f.byte()&0x0f != 0 {
		o := mp.OptNeg{Version: 2 + uint32(f.byte()%5), Actions: mp.Action(f.u16()) & mp.ActAllMask,
			Protocol: mp.Protocol(f.u32()) & mp.ProtoAllMask}
		if f.byte()&1 != 0 {
			o.SymLists = []mp.SymList{{Stage: mp.StageEnvFrom, Macros: "{auth_authen} " + f.str()}}
		}
		out = mp.AppendPacket(out, mp.RespOptNeg, o.Append(nil))
	}
	for n := 0; len(f.b) > 0 && n < 64; n++ {
		ctl := f.byte()
		code := replyCodes[int(ctl&0x3f)%len(replyCodes)]
		if ctl&0x80 != 0 && ctl&0x40 != 0 {
			code = f.byte()
		}
		var data []byte
		if ctl&0x40 != 0 {
			data = f.bytes(int(f.byte()))
		} else {
			switch code {
			case mp.RespReplyCode:
				data = mp.AppendStrings(nil, []string{"550 5.7.1 no", "451 4.3.0 later", "421 4.3.0 bye", f.str()}[f.byte()%4])
			case mp.RespAddHeader:
				data = mp.AppendStrings(nil, f.str(), f.str())
			case mp.RespInsHeader, mp.RespChgHeader:
				data = mp.Header{Index: uint32(f.byte() % 4), Name: f.str(), Value: f.str()}.AppendIndexed(nil)
			case mp.RespAddRcpt, mp.RespDelRcpt, mp.RespQuarantine:
				data = mp.AppendStrings(nil, f.str())
			case mp.RespAddRcptPar, mp.RespChgFrom:
				data = mp.AddrArgs{Addr: "<" + f.str() + ">", Args: f.str(), HasArgs: f.byte()&1 != 0}.Append(nil)
			case mp.RespReplBody:
				data = f.bytes(int(f.byte()))
			case mp.RespOptNeg:
				data = mp.OptNeg{Version: uint32(f.byte() % 8), Actions: mp.Action(f.u16()), Protocol: mp.Protocol(f.u32())}.Append(nil)
			}
		}
		out = mp.AppendPacket(out, code, data)
	}
	return out
}

var fuzzEvents = []pmult.Kind{pmult.KindConnect, pmult.KindHelo, pmult.KindMail, pmult.KindRcpt, pmult.KindData,
	pmult.KindHeader, pmult.KindEOH, pmult.KindBody, pmult.KindEOM, pmult.KindAbort, pmult.KindUnknown}

const clientFuzzTimeout = 10 * time.Second

// FuzzBackendReplies drives one backend session against a filter that
// writes the scripted reply packets.
func FuzzBackendReplies(f *testing.F) {
	sock := filepath.Join(f.TempDir(), "m.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	ok := func(ps ...byte) []byte { return ps }
	// Seeds: a clean session, one with edits at EOM, one with a reject.
	neg := []byte{0x01, 0x06 - 2, 0xff, 0x01, 0, 0, 0, 0, 0}
	f.Add(append([]byte{0x00, 0x00}, append(neg, ok(0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0x01, 'X', 0x01, 'y', 0)...)...))
	f.Add(append([]byte{0x01, 0x00}, append(neg, ok(0, 0, 0, 0, 0, 0, 0, 7, 0, 10, 0x01, 0, 0x02, 'a', 'b', 15, 3, 'n', 'e', 'w', 0)...)...))
	f.Add(append([]byte{0x00, 0x01}, append(neg, ok(0, 0, 2, 0)...)...))
	f.Add(append([]byte{0x00, 0x00}, append(neg, ok(0, 0, 5, 0, 6, 7, 0)...)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &cfz{b: data}
		reuse := in.byte()&1 != 0
		leadspc := in.byte()&1 != 0
		out := script(in)
		before := runtime.NumGoroutine()
		filterDone := make(chan struct{})
		go func() {
			defer close(filterDone)
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				buf := make([]byte, 64<<10)
				nc.SetReadDeadline(time.Now().Add(clientFuzzTimeout))
				for {
					if _, err := nc.Read(buf); err != nil {
						return
					}
				}
			}()
			nc.SetWriteDeadline(time.Now().Add(clientFuzzTimeout))
			nc.Write(out)
			nc.(*net.UnixConn).CloseWrite()
			<-drained
		}()
		b := New(Config{Name: "fuzz", Network: "unix", Address: sock, ConnectTimeout: clientFuzzTimeout,
			ReadTimeout: clientFuzzTimeout, WriteTimeout: clientFuzzTimeout, EOMTimeout: clientFuzzTimeout, Reuse: reuse})
		ctx, cancel := context.WithTimeout(context.Background(), 2*clientFuzzTimeout)
		defer cancel()
		offer := pmult.Offer{Actions: pmult.ActModify | pmult.ActQuarantine, Skip: true, RejectedRcpts: true,
			LeadingSpace: leadspc, SymList: true, Version: 6}
		start := time.Now()
		s, err := b.Open(ctx, pmult.OpenInfo{Offer: offer, Progress: func() {}})
		if err == nil {
			caps := s.Caps()
			for _, k := range fuzzEvents {
				ev := &pmult.Event{Kind: k, Hostname: "h", Family: 'U', Arg: "helo", Args: []string{"<a@b>"},
					Name: "Subject", Value: " x", Chunk: []byte("body\r\n")}
				if caps.NoEvent.Has(k) {
					continue
				}
				r, err := s.Handle(ctx, ev)
				if err != nil {
					break
				}
				if r.Verdict > pmult.Shutdown {
					t.Fatalf("%s: unknown verdict %d", k, r.Verdict)
				}
				for _, e := range r.Edits {
					if k != pmult.KindEOM {
						t.Fatalf("%s: edit %s outside end of message", k, e.Kind)
					}
					if e.Kind.Need()&caps.Actions == 0 {
						t.Fatalf("edit %s the filter did not negotiate (actions 0x%x)", e.Kind, uint32(caps.Actions))
					}
				}
				if r.Verdict != pmult.Continue && r.Verdict != pmult.Skip && k != pmult.KindRcpt {
					break
				}
			}
			s.Close()
		}
		b.Retire()
		if d := time.Since(start); d > clientFuzzTimeout {
			t.Fatalf("session took %s: wedged on a timeout", d)
		}
		select {
		case <-filterDone:
		case <-time.After(2 * clientFuzzTimeout):
			t.Fatal("the client never closed its connection")
		}
		for deadline := time.Now().Add(clientFuzzTimeout); runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			}
		}
	})
}
