// edits.go: the filter's modification packets as engine edits.

package milter

import (
	"fmt"

	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// edit decodes one modification packet into the engine's form (header
// values with their leading space).
func (s *session) edit(p mp.Packet) (pmult.Edit, error) {
	space := func(v string, del bool) string {
		if s.leadspc || (del && v == "") {
			return v
		}
		return " " + v
	}
	switch p.Code {
	case mp.RespAddHeader:
		h, err := mp.ParseHeader(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditAddHeader, Name: h.Name, Value: space(h.Value, false)}, err
	case mp.RespInsHeader:
		h, err := mp.ParseIndexedHeader(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditInsertHeader, Index: int(h.Index), Name: h.Name,
			Value: space(h.Value, false)}, err
	case mp.RespChgHeader:
		h, err := mp.ParseIndexedHeader(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditChangeHeader, Index: int(h.Index), Name: h.Name,
			Value: space(h.Value, true)}, err
	case mp.RespAddRcpt:
		a, err := mp.ParseString(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditAddRcpt, Addr: a}, err
	case mp.RespDelRcpt:
		a, err := mp.ParseString(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditDelRcpt, Addr: a}, err
	case mp.RespAddRcptPar:
		a, err := mp.ParseAddrArgs(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditAddRcptPar, Addr: a.Addr, Args: a.Args, HasArgs: a.HasArgs}, err
	case mp.RespChgFrom:
		a, err := mp.ParseAddrArgs(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditChangeFrom, Addr: a.Addr, Args: a.Args, HasArgs: a.HasArgs}, err
	case mp.RespQuarantine:
		r, err := mp.ParseString(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditQuarantine, Value: r}, err
	case mp.RespReplBody:
		return pmult.Edit{Kind: pmult.EditReplaceBody}, nil
	}
	return pmult.Edit{}, fmt.Errorf("unexpected reply %s", mp.RespName(p.Code))
}
