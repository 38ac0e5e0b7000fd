// skip.go: addresses that are not verified, to avoid loops and harm: the
// null sender, authenticated clients ({auth_authen} or {auth_type} set),
// the prober's own connections coming back (the client address is one of
// the prober's source addresses, or the HELO is the prober's EHLO name:
// mailfromd's "avoiding verification loops"), whitelisted clients (CIDR)
// and senders (addresses and domains), and senders an earlier check
// vouched for (a macro with one of the configured values: from the MTA,
// or set by a backend before this one in the chain, pmult/assign.go; with
// a skip macro the backend gets MAIL and RCPT after the others answered
// them, Caps.WaitEarlier, so it sees a macro they set at MAIL itself). A
// sender skipped by the macro is logged at debug level and kept as a
// "macro_skip" policy in the decision record.

package callout

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// Skip says which addresses are not verified.
type Skip struct {
	// OwnAddresses are the prober's source addresses: a client
	// connecting from one of them is the prober coming back.
	OwnAddresses []netip.Addr
	// OwnHelo are the prober's EHLO names (compared without case).
	OwnHelo []string
	// Clients are client networks never verified.
	Clients []netip.Prefix
	// Senders are addresses ("user@example.com"), domains
	// ("example.com") and domains with their subdomains (".example.com")
	// never verified.
	Senders []string
	// Macro, if set, names a macro (without braces) whose value in
	// MacroValues (without case) means the sender is vouched for.
	Macro       string
	MacroValues []string
}

// why returns why the address is not verified ("" if it is).
func (k *Skip) why(s *session, what, addr string) string {
	if what == "sender" && (addr == "" || addr == "<>") {
		return "null sender"
	}
	if s.macros["auth_authen"] != "" || s.macros["auth_type"] != "" {
		return "authenticated client"
	}
	if s.client.IsValid() {
		if slices.Contains(k.OwnAddresses, s.client) {
			return "the client is the prober (loop)"
		}
		for _, p := range k.Clients {
			if p.Contains(s.client) {
				return "whitelisted client " + p.String()
			}
		}
	}
	if s.helo != "" {
		for _, h := range k.OwnHelo {
			if strings.EqualFold(h, s.helo) {
				return "the client's HELO is the prober's (loop)"
			}
		}
	}
	if what == "sender" {
		if m := k.senderListed(addr); m != "" {
			return "whitelisted sender " + m
		}
		if v := k.vouched(s); v != "" {
			return "vouched for by " + v
		}
	}
	return ""
}

// vouched returns "{macro}=value" when the skip macro has one of its
// values ("" if not).
func (k *Skip) vouched(s *session) string {
	if k.Macro == "" {
		return ""
	}
	if v, ok := s.macros[k.Macro]; ok {
		for _, want := range k.MacroValues {
			if strings.EqualFold(strings.TrimSpace(v), want) {
				return "{" + k.Macro + "}=" + v
			}
		}
	}
	return ""
}

// senderListed returns the Senders entry that matches addr.
func (k *Skip) senderListed(addr string) string {
	local, domain, _ := smtpprobe.SplitAddress(addr)
	full := strings.ToLower(local) + "@" + domain
	for _, e := range k.Senders {
		le := strings.ToLower(e)
		switch {
		case strings.Contains(le, "@"):
			if strings.TrimPrefix(le, "@") == domain || le == full {
				return e
			}
		case strings.HasPrefix(le, "."):
			if domain == le[1:] || strings.HasSuffix(domain, le) {
				return e
			}
		case le == domain:
			return e
		}
	}
	return ""
}
