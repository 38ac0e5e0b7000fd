// defer.go: whether the MTA is let off the replies to headers, EOH and
// body chunks (Server.DeferContent, pmult.Offer's DeferContent).

package milter

import mp "github.com/mailmux/mailmux/milterproto"

// DeferContent says whether pmult grants the MTA NR_HDR, NR_EOH and
// NR_BODY (where it offers them) even when backends answer those events,
// giving a verdict reached there at end of message.
type DeferContent int

const (
	// DeferAuto (default) grants them unless the MTA's offer is one known
	// to wait for those replies all the same (see WaitsForContentReplies).
	DeferAuto DeferContent = iota
	// DeferOn grants them to every MTA that offers them.
	DeferOn
	// DeferOff grants them only where no backend answers the event.
	DeferOff
)

// String names the mode as config spells it.
func (d DeferContent) String() string {
	switch d {
	case DeferOn:
		return "true"
	case DeferOff:
		return "false"
	}
	return "auto"
}

// WaitsForContentReplies reports whether an MTA making this OPTNEG offer
// is known to wait for the replies to headers, EOH and body chunks even
// where it offers NR_HDR, NR_EOH and NR_BODY. Offers seen: Postfix 3.7
// and Sendmail 8.17 version 6, actions 0x1ff, protocol 0x1fffff (they do
// not wait); our mtasim version 6, 0x1ff, 0x1ff7ff (does not wait);
// emersion/go-milter's client version 6, 0x57, protocol 0 (offers no
// NR); mailfromd's mtasim 8.15 version 0x01000000, actions 0xff,
// protocol 0x1fffff: it sends its library version where the protocol
// version belongs, and it waits. So an offer above the highest protocol
// version (6) is taken to wait: true for mtasim, and the safe guess for
// any MTA speaking a version this code does not know (waiting costs
// round trips, never a wrong answer).
func WaitsForContentReplies(version uint32, _ mp.Action, _ mp.Protocol) bool {
	return version > mp.MaxVersion
}

// decide decides for one negotiation: whether content replies
// are deferred, and why (for the debug line).
func (d DeferContent) decide(o mp.OptNeg) (deferred bool, why string) {
	switch d {
	case DeferOn:
		return true, "defer_content = true"
	case DeferOff:
		return false, "defer_content = false"
	}
	if WaitsForContentReplies(o.Version, o.Actions, o.Protocol) {
		return false, "defer_content = auto: the MTA's offer is one known to wait for these replies (mailfromd's mtasim)"
	}
	return true, "defer_content = auto"
}
