// Package milterkind is the one table between the engine's event kinds
// (pmult.Kind) and the milter protocol's command letters (SMFIC_*) and
// macro stages (SMFIM_*), for the milter front end, the milter backend,
// the simulators and the MTA configuration printer. It imports milterproto
// and pmult only.
package milterkind

import (
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// cmds maps every kind with a milter command to its letter.
var cmds = [...]byte{
	pmult.KindConnect: mp.CmdConnect,
	pmult.KindHelo:    mp.CmdHelo,
	pmult.KindMail:    mp.CmdMail,
	pmult.KindRcpt:    mp.CmdRcpt,
	pmult.KindData:    mp.CmdData,
	pmult.KindHeader:  mp.CmdHeader,
	pmult.KindEOH:     mp.CmdEOH,
	pmult.KindBody:    mp.CmdBody,
	pmult.KindEOM:     mp.CmdEOB,
	pmult.KindAbort:   mp.CmdAbort,
	pmult.KindQuit:    mp.CmdQuit,
	pmult.KindQuitNC:  mp.CmdQuitNC,
	pmult.KindUnknown: mp.CmdUnknown,
}

// Cmd returns the milter command letter of k, or 0 for a kind without one
// (KindNone).
func Cmd(k pmult.Kind) byte {
	if int(k) < len(cmds) {
		return cmds[k]
	}
	return 0
}

// Kind returns the event kind of milter command cmd, or KindNone for a
// letter that is no event (SMFIC_OPTNEG, SMFIC_MACRO) or unknown.
func Kind(cmd byte) pmult.Kind {
	for k, c := range cmds {
		if c == cmd && c != 0 {
			return pmult.Kind(k)
		}
	}
	return pmult.KindNone
}

// Stage returns the macro stage (SMFIM_*) of events of kind k, and false
// for a kind no macro list can be negotiated for (header, body, abort,
// quit, unknown).
func Stage(k pmult.Kind) (mp.Stage, bool) {
	switch k {
	case pmult.KindConnect:
		return mp.StageConnect, true
	case pmult.KindHelo:
		return mp.StageHelo, true
	case pmult.KindMail:
		return mp.StageEnvFrom, true
	case pmult.KindRcpt:
		return mp.StageEnvRcpt, true
	case pmult.KindData:
		return mp.StageData, true
	case pmult.KindEOH:
		return mp.StageEOH, true
	case pmult.KindEOM:
		return mp.StageEOM, true
	}
	return 0, false
}

// OfStage returns the event kind of macro stage st, and false for a stage
// number the protocol does not define.
func OfStage(st mp.Stage) (pmult.Kind, bool) {
	for k := pmult.KindConnect; k <= pmult.KindUnknown; k++ {
		if s, ok := Stage(k); ok && s == st {
			return k, true
		}
	}
	return pmult.KindNone, false
}
