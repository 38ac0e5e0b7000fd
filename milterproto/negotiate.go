// negotiate.go: the arithmetic of option negotiation: masks per version,
// which SMFIP bit switches an event off or its reply, reply validation as
// Sendmail does it, and MDS sizes.

package milterproto

import "fmt"

// ActionMaskForVersion returns the actions a filter of version v may use.
func ActionMaskForVersion(v uint32) Action {
	switch {
	case v >= 6:
		return ActAllMask
	case v >= 2:
		return ActV2Mask
	default:
		return ActV1Mask
	}
}

// ProtocolMaskForVersion returns the protocol bits defined at version v
// (as Postfix's MILTER8_Vn_PROTO_MASK).
func ProtocolMaskForVersion(v uint32) Protocol {
	switch {
	case v >= 6:
		return ProtoAllMask
	case v >= 4:
		return ProtoV2Mask | ProtoNoUnknown | ProtoNoData
	case v == 3:
		return ProtoV2Mask | ProtoNoUnknown
	case v == 2:
		return ProtoV2Mask
	default:
		return ProtoV1Mask
	}
}

// NoEventFlag returns the SMFIP_NO* bit that switches command cmd off, or 0.
func NoEventFlag(cmd byte) Protocol {
	switch cmd {
	case CmdConnect:
		return ProtoNoConnect
	case CmdHelo:
		return ProtoNoHelo
	case CmdMail:
		return ProtoNoMail
	case CmdRcpt:
		return ProtoNoRcpt
	case CmdBody:
		return ProtoNoBody
	case CmdHeader:
		return ProtoNoHeaders
	case CmdEOH:
		return ProtoNoEOH
	case CmdUnknown:
		return ProtoNoUnknown
	case CmdData:
		return ProtoNoData
	}
	return 0
}

// NoReplyFlag returns the SMFIP_NR_* bit that suppresses the reply to cmd,
// or 0 (EOM is always answered).
func NoReplyFlag(cmd byte) Protocol {
	switch cmd {
	case CmdConnect:
		return ProtoNRConnect
	case CmdHelo:
		return ProtoNRHelo
	case CmdMail:
		return ProtoNRMail
	case CmdRcpt:
		return ProtoNRRcpt
	case CmdBody:
		return ProtoNRBody
	case CmdHeader:
		return ProtoNRHeader
	case CmdEOH:
		return ProtoNREOH
	case CmdUnknown:
		return ProtoNRUnknown
	case CmdData:
		return ProtoNRData
	}
	return 0
}

// Wants reports whether a filter that negotiated p wants command cmd.
func (p Protocol) Wants(cmd byte) bool { f := NoEventFlag(cmd); return f == 0 || p&f == 0 }

// Replies reports whether a filter that negotiated p answers command cmd.
// Commands that never get a reply (MACRO, ABORT, QUIT, QUIT_NC) return false.
func (p Protocol) Replies(cmd byte) bool {
	switch cmd {
	case CmdMacro, CmdAbort, CmdQuit, CmdQuitNC:
		return false
	}
	f := NoReplyFlag(cmd)
	return f == 0 || p&f == 0
}

// MaxDataSize returns the data size limit that protocol bits p grant.
func MaxDataSize(p Protocol) int {
	switch {
	case p&ProtoMDS1M != 0:
		return MDS1M
	case p&ProtoMDS256K != 0:
		return MDS256K
	default:
		return MDS64K
	}
}

// StageOf returns the macro stage of command cmd and whether it has one.
func StageOf(cmd byte) (Stage, bool) {
	switch cmd {
	case CmdConnect:
		return StageConnect, true
	case CmdHelo:
		return StageHelo, true
	case CmdMail:
		return StageEnvFrom, true
	case CmdRcpt:
		return StageEnvRcpt, true
	case CmdData:
		return StageData, true
	case CmdEOB, CmdBody:
		return StageEOM, true
	case CmdEOH, CmdHeader:
		return StageEOH, true
	}
	return 0, false
}

// CheckReply validates a filter's OPTNEG reply against the offer the way
// Sendmail's milter_negotiate does: a version from MinVersion up to the
// offered one, actions within the offer, protocol bits (internal MDS bits
// aside) within the offer.
func CheckReply(offer, reply OptNeg) error {
	if reply.Version < MinVersion || reply.Version > offer.Version {
		return fmt.Errorf("milter: filter chose version %d, offered %d (minimum %d)",
			reply.Version, offer.Version, MinVersion)
	}
	if extra := reply.Actions &^ offer.Actions; extra != 0 {
		return fmt.Errorf("milter: filter asked for actions 0x%x that were not offered (offered 0x%x)",
			uint32(extra), uint32(offer.Actions))
	}
	if extra := (reply.Protocol &^ ProtoInternal) &^ offer.Protocol; extra != 0 {
		return fmt.Errorf("milter: filter asked for protocol bits 0x%x that were not offered (offered 0x%x)",
			uint32(extra), uint32(offer.Protocol))
	}
	return nil
}

// AllowedReply reports whether reply code r may follow command cmd under
// negotiated actions a and protocol p (modification replies only at EOM,
// SKIP only if negotiated, QUARANTINE after any event as Postfix allows).
func AllowedReply(cmd, r byte, a Action, p Protocol) error {
	need := Action(0)
	switch r {
	case RespContinue, RespAccept, RespReject, RespTempfail, RespReplyCode, RespProgress:
		return nil
	case RespDiscard:
		return nil
	case RespShutdown:
		return nil
	case RespSkip:
		if p&ProtoSkip == 0 {
			return fmt.Errorf("milter: SMFIR_SKIP without negotiated SMFIP_SKIP")
		}
		return nil
	case RespQuarantine:
		need = ActQuarantine
	case RespAddHeader, RespInsHeader:
		need = ActAddHeaders
	case RespChgHeader:
		need = ActChangeHeaders
	case RespAddRcpt:
		need = ActAddRcpt
	case RespAddRcptPar:
		need = ActAddRcptPar
	case RespDelRcpt:
		need = ActDelRcpt
	case RespChgFrom:
		need = ActChangeFrom
	case RespReplBody:
		need = ActChangeBody
	default:
		return fmt.Errorf("milter: unexpected reply %s", RespName(r))
	}
	if a&need == 0 {
		return fmt.Errorf("milter: %s without negotiated action 0x%x", RespName(r), uint32(need))
	}
	if cmd != CmdEOB && r != RespQuarantine {
		return fmt.Errorf("milter: %s after %s (allowed only at end of message)", RespName(r), CmdName(cmd))
	}
	return nil
}
