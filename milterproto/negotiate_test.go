package milterproto

import (
	"strings"
	"testing"
)

func TestActionMaskForVersion(t *testing.T) {
	tests := []struct {
		v    uint32
		want Action
	}{
		{0, 0x0F}, {1, 0x0F}, {2, 0x3F}, {3, 0x3F}, {4, 0x3F}, {5, 0x3F}, {6, 0x1FF}, {7, 0x1FF}, {0x01000001, 0x1FF},
	}
	for _, tt := range tests {
		if got := ActionMaskForVersion(tt.v); got != tt.want {
			t.Errorf("ActionMaskForVersion(%d) = 0x%x, want 0x%x", tt.v, uint32(got), uint32(tt.want))
		}
	}
}

func TestProtocolMaskForVersion(t *testing.T) {
	tests := []struct {
		v    uint32
		want Protocol
	}{
		{0, 0x3F}, {1, 0x3F}, {2, 0x7F}, {3, 0x17F}, {4, 0x37F}, {5, 0x37F}, {6, 0x1FFFFF}, {7, 0x1FFFFF},
	}
	for _, tt := range tests {
		if got := ProtocolMaskForVersion(tt.v); got != tt.want {
			t.Errorf("ProtocolMaskForVersion(%d) = 0x%x, want 0x%x", tt.v, uint32(got), uint32(tt.want))
		}
	}
}

// Every command code, with its SMFIP_NO* bit, its SMFIP_NR_* bit and
// whether a filter ever answers it.
var commandFlags = []struct {
	cmd     byte
	noEvent Protocol
	noReply Protocol
	replied bool // answered when no flag is set
}{
	{CmdAbort, 0, 0, false},
	{CmdBody, ProtoNoBody, ProtoNRBody, true},
	{CmdConnect, ProtoNoConnect, ProtoNRConnect, true},
	{CmdMacro, 0, 0, false},
	{CmdEOB, 0, 0, true},
	{CmdHelo, ProtoNoHelo, ProtoNRHelo, true},
	{CmdQuitNC, 0, 0, false},
	{CmdHeader, ProtoNoHeaders, ProtoNRHeader, true},
	{CmdMail, ProtoNoMail, ProtoNRMail, true},
	{CmdEOH, ProtoNoEOH, ProtoNREOH, true},
	{CmdOptNeg, 0, 0, true},
	{CmdQuit, 0, 0, false},
	{CmdRcpt, ProtoNoRcpt, ProtoNRRcpt, true},
	{CmdData, ProtoNoData, ProtoNRData, true},
	{CmdUnknown, ProtoNoUnknown, ProtoNRUnknown, true},
}

func TestCommandFlagTableComplete(t *testing.T) {
	seen := map[byte]bool{}
	for _, c := range commandFlags {
		seen[c.cmd] = true
	}
	for c := range cmdNames {
		if !seen[c] {
			t.Errorf("command %s missing from commandFlags", CmdName(c))
		}
	}
	var no, nr Protocol
	for _, c := range commandFlags {
		no |= c.noEvent
		nr |= c.noReply
	}
	if no != ProtoNoEventMask {
		t.Errorf("NO* bits 0x%x, ProtoNoEventMask 0x%x", uint32(no), uint32(ProtoNoEventMask))
	}
	if nr != ProtoNoReplyMask {
		t.Errorf("NR_* bits 0x%x, ProtoNoReplyMask 0x%x", uint32(nr), uint32(ProtoNoReplyMask))
	}
}

func TestNoEventNoReplyFlags(t *testing.T) {
	for _, c := range commandFlags {
		name := CmdName(c.cmd)
		if got := NoEventFlag(c.cmd); got != c.noEvent {
			t.Errorf("NoEventFlag(%s) = 0x%x, want 0x%x", name, uint32(got), uint32(c.noEvent))
		}
		if got := NoReplyFlag(c.cmd); got != c.noReply {
			t.Errorf("NoReplyFlag(%s) = 0x%x, want 0x%x", name, uint32(got), uint32(c.noReply))
		}
	}
	for _, c := range []byte{0, 'Z', 'c', 'y'} {
		if NoEventFlag(c) != 0 || NoReplyFlag(c) != 0 {
			t.Errorf("unknown code %q has a flag", c)
		}
	}
}

func TestProtocolWantsReplies(t *testing.T) {
	for _, c := range commandFlags {
		name := CmdName(c.cmd)
		// Nothing set: every command is wanted; replies as in the table.
		if !Protocol(0).Wants(c.cmd) {
			t.Errorf("0.Wants(%s) = false", name)
		}
		if got := Protocol(0).Replies(c.cmd); got != c.replied {
			t.Errorf("0.Replies(%s) = %v, want %v", name, got, c.replied)
		}
		// Everything set: only commands without a NO* bit are wanted, and
		// only EOB and OPTNEG are still answered.
		all := ProtoAllMask | ProtoInternal | ProtoTest
		if got, want := all.Wants(c.cmd), c.noEvent == 0; got != want {
			t.Errorf("all.Wants(%s) = %v, want %v", name, got, want)
		}
		if got, want := all.Replies(c.cmd), c.replied && c.noReply == 0; got != want {
			t.Errorf("all.Replies(%s) = %v, want %v", name, got, want)
		}
		if c.noEvent != 0 {
			if c.noEvent.Wants(c.cmd) {
				t.Errorf("%s wanted with its own NO bit set", name)
			}
			if !(^c.noEvent).Wants(c.cmd) {
				t.Errorf("%s not wanted with every other bit set", name)
			}
			// A NO* bit does not suppress the reply.
			if c.noEvent.Replies(c.cmd) != c.replied {
				t.Errorf("NO bit of %s changes Replies", name)
			}
		}
		if c.noReply != 0 {
			if c.noReply.Replies(c.cmd) {
				t.Errorf("%s replied with its own NR bit set", name)
			}
			if !(^c.noReply).Replies(c.cmd) {
				t.Errorf("%s not replied with every other bit set", name)
			}
			if !c.noReply.Wants(c.cmd) {
				t.Errorf("NR bit of %s switches the event off", name)
			}
		}
	}
	// EOM is always answered.
	if !(ProtoAllMask | ProtoInternal).Replies(CmdEOB) {
		t.Error("EOB not answered")
	}
}

func TestMaxDataSize(t *testing.T) {
	tests := []struct {
		p    Protocol
		want int
	}{
		{0, 65535},
		{ProtoAllMask, 65535},
		{ProtoMDS256K, 262143},
		{ProtoMDS1M, 1048575},
		{ProtoMDS256K | ProtoMDS1M, 1048575},
		{ProtoInternal | ProtoAllMask, 1048575},
		{0x40000000, 65535},
	}
	for _, tt := range tests {
		if got := MaxDataSize(tt.p); got != tt.want {
			t.Errorf("MaxDataSize(0x%x) = %d, want %d", uint32(tt.p), got, tt.want)
		}
	}
}

func TestStageOf(t *testing.T) {
	tests := []struct {
		cmd  byte
		want Stage
		ok   bool
	}{
		{CmdConnect, 0, true},
		{CmdHelo, 1, true},
		{CmdMail, 2, true},
		{CmdRcpt, 3, true},
		{CmdData, 4, true},
		{CmdEOB, 5, true}, // EOM = 5 ...
		{CmdBody, 5, true},
		{CmdEOH, 6, true}, // ... comes before EOH = 6
		{CmdHeader, 6, true},
		{CmdUnknown, 0, false},
		{CmdMacro, 0, false},
		{CmdAbort, 0, false},
		{CmdQuit, 0, false},
		{CmdQuitNC, 0, false},
		{CmdOptNeg, 0, false},
		{'Z', 0, false},
	}
	for _, tt := range tests {
		got, ok := StageOf(tt.cmd)
		if got != tt.want || ok != tt.ok {
			t.Errorf("StageOf(%s) = %d, %v; want %d, %v", CmdName(tt.cmd), got, ok, tt.want, tt.ok)
		}
	}
	if StageEOM != 5 || StageEOH != 6 || NumStages != 7 {
		t.Errorf("stage numbers changed: EOM %d EOH %d N %d", StageEOM, StageEOH, NumStages)
	}
}

func TestCheckReply(t *testing.T) {
	offer := OptNeg{Version: 6, Actions: ActAllMask, Protocol: ProtoAllMask}
	v2offer := OptNeg{Version: 2, Actions: ActV2Mask, Protocol: ProtoV2Mask}
	tests := []struct {
		name   string
		offer  OptNeg
		reply  OptNeg
		errSub string
	}{
		{name: "same as offer", offer: offer, reply: offer},
		{name: "subset", offer: offer, reply: OptNeg{Version: 6, Actions: ActAddHeaders | ActQuarantine, Protocol: ProtoNoHelo | ProtoSkip}},
		{name: "version 2", offer: offer, reply: OptNeg{Version: 2}},
		{name: "version 4 of 6", offer: offer, reply: OptNeg{Version: 4, Protocol: ProtoNoData}},
		{name: "with symlists", offer: offer, reply: OptNeg{Version: 6, Actions: ActSetSymList, SymLists: []SymList{{Stage: 2, Macros: "i"}}}},
		{name: "MDS bits in reply tolerated", offer: offer, reply: OptNeg{Version: 6, Protocol: ProtoMDS256K | ProtoMDS1M | ProtoNoBody}},
		{name: "all internal bits tolerated", offer: v2offer, reply: OptNeg{Version: 2, Protocol: ProtoInternal}},
		{name: "version 1 rejected", offer: offer, reply: OptNeg{Version: 1}, errSub: "version 1"},
		{name: "version 0 rejected", offer: offer, reply: OptNeg{Version: 0}, errSub: "version 0"},
		{name: "version above offer rejected", offer: v2offer, reply: OptNeg{Version: 3}, errSub: "version 3, offered 2"},
		{name: "version 7 rejected", offer: offer, reply: OptNeg{Version: 7}, errSub: "version 7"},
		{name: "extra actions rejected", offer: v2offer, reply: OptNeg{Version: 2, Actions: ActChangeFrom | ActAddHeaders}, errSub: "actions 0x40"},
		{name: "extra protocol bits rejected", offer: v2offer, reply: OptNeg{Version: 2, Protocol: ProtoSkip | ProtoNoConnect}, errSub: "protocol bits 0x400"},
		{name: "SMFIP_TEST not internal", offer: offer, reply: OptNeg{Version: 6, Protocol: ProtoTest}, errSub: "protocol bits 0x80000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckReply(tt.offer, tt.reply)
			if tt.errSub == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.errSub)
			}
		})
	}
}

func TestAllowedReply(t *testing.T) {
	modReplies := []struct {
		r    byte
		need Action
	}{
		{RespAddHeader, ActAddHeaders},
		{RespInsHeader, ActAddHeaders},
		{RespChgHeader, ActChangeHeaders},
		{RespAddRcpt, ActAddRcpt},
		{RespAddRcptPar, ActAddRcptPar},
		{RespDelRcpt, ActDelRcpt},
		{RespChgFrom, ActChangeFrom},
		{RespReplBody, ActChangeBody},
	}
	events := []byte{CmdConnect, CmdHelo, CmdMail, CmdRcpt, CmdData, CmdHeader, CmdEOH, CmdBody, CmdUnknown}

	// Modification replies: only after EOB, and only with their action.
	for _, m := range modReplies {
		name := RespName(m.r)
		if err := AllowedReply(CmdEOB, m.r, m.need, 0); err != nil {
			t.Errorf("%s at EOB with its action: %v", name, err)
		}
		if err := AllowedReply(CmdEOB, m.r, ActAllMask&^m.need, ProtoAllMask); err == nil ||
			!strings.Contains(err.Error(), "without negotiated action") {
			t.Errorf("%s at EOB without its action: %v", name, err)
		}
		for _, ev := range events {
			if err := AllowedReply(ev, m.r, ActAllMask, ProtoAllMask); err == nil ||
				!strings.Contains(err.Error(), "allowed only at end of message") {
				t.Errorf("%s after %s: %v", name, CmdName(ev), err)
			}
		}
	}

	// Quarantine: anywhere, but only with SMFIF_QUARANTINE.
	for _, ev := range append(events, CmdEOB) {
		if err := AllowedReply(ev, RespQuarantine, ActQuarantine, 0); err != nil {
			t.Errorf("quarantine after %s: %v", CmdName(ev), err)
		}
		if err := AllowedReply(ev, RespQuarantine, ActAllMask&^ActQuarantine, 0); err == nil {
			t.Errorf("quarantine after %s without SMFIF_QUARANTINE allowed", CmdName(ev))
		}
	}

	// Decisions and keep-alives: anywhere, whatever was negotiated.
	for _, r := range []byte{RespContinue, RespAccept, RespReject, RespTempfail, RespReplyCode, RespProgress, RespDiscard, RespShutdown} {
		for _, ev := range append(events, CmdEOB) {
			if err := AllowedReply(ev, r, 0, 0); err != nil {
				t.Errorf("%s after %s: %v", RespName(r), CmdName(ev), err)
			}
		}
	}

	// Skip: only with SMFIP_SKIP.
	for _, ev := range []byte{CmdRcpt, CmdHeader, CmdBody} {
		if err := AllowedReply(ev, RespSkip, 0, ProtoSkip); err != nil {
			t.Errorf("skip after %s with SMFIP_SKIP: %v", CmdName(ev), err)
		}
		if err := AllowedReply(ev, RespSkip, ActAllMask, ProtoAllMask&^ProtoSkip); err == nil ||
			!strings.Contains(err.Error(), "SMFIP_SKIP") {
			t.Errorf("skip after %s without SMFIP_SKIP: %v", CmdName(ev), err)
		}
	}

	// Never valid on the wire, or unknown.
	for _, r := range []byte{RespConnFail, RespSetSymList, RespOptNeg, 'Z', 0} {
		for _, ev := range []byte{CmdConnect, CmdEOB} {
			if err := AllowedReply(ev, r, ActAllMask, ProtoAllMask); err == nil ||
				!strings.Contains(err.Error(), "unexpected reply") {
				t.Errorf("reply %q after %s: %v", r, CmdName(ev), err)
			}
		}
	}
}

func TestActModify(t *testing.T) {
	if ActModify&(ActQuarantine|ActSetSymList) != 0 {
		t.Error("ActModify includes quarantine or symlist")
	}
	if ActModify|ActQuarantine|ActSetSymList != ActAllMask {
		t.Errorf("ActModify 0x%x", uint32(ActModify))
	}
}
