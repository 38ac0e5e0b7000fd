// verdict.go: what each probe result means for the MTA: the actions
// (continue, accept, reject, tempfail, tag), their SMTP texts, and the
// defaults, which reject with sender codes (5.1.7 bad sender mailbox,
// 5.1.8 bad sender domain), never 5.1.1: downstream gateways cache a
// 5.1.1 as an unknown recipient.

package callout

import (
	"fmt"
	"strings"

	"github.com/mailmux/mailmux/pmult"
)

// ActionKind is what a verdict does.
type ActionKind uint8

// Action kinds.
const (
	ActContinue ActionKind = iota // let the message go on (other backends decide)
	ActAccept                     // accept: this backend is done with the message
	ActReject                     // 5xx
	ActTempfail                   // 4xx
	ActTag                        // continue, and add a header at end of message
)

var actionNames = [...]string{"continue", "accept", "reject", "tempfail", "tag"}

func (k ActionKind) String() string { return actionNames[k] }

// Action is one configured verdict: its kind, and for reject and tempfail
// the SMTP reply ("550 5.1.7 text").
type Action struct {
	Kind ActionKind
	Text string
}

// ParseAction parses "continue", "accept", "tag", "reject" or "tempfail",
// the last two optionally followed by the SMTP reply ("reject 550 5.1.0
// Sender validity not confirmed"), whose code must be 5xx for reject and
// 4xx for tempfail. def supplies the text left out.
func ParseAction(s string, def Action) (Action, error) {
	word, text, _ := strings.Cut(strings.TrimSpace(s), " ")
	text = strings.TrimSpace(text)
	var a Action
	switch strings.ToLower(word) {
	case "continue", "pass":
		a.Kind = ActContinue
	case "accept":
		a.Kind = ActAccept
	case "tag":
		a.Kind = ActTag
	case "reject":
		a.Kind = ActReject
	case "tempfail":
		a.Kind = ActTempfail
	default:
		return Action{}, fmt.Errorf("unknown verdict %q (want continue, accept, tag, reject or tempfail)", s)
	}
	if a.Kind != ActReject && a.Kind != ActTempfail {
		if text != "" {
			return Action{}, fmt.Errorf("verdict %q: only reject and tempfail take a reply text", s)
		}
		return a, nil
	}
	want := byte('5')
	if a.Kind == ActTempfail {
		want = '4'
	}
	if text == "" {
		if def.Kind == a.Kind {
			a.Text = def.Text
		} else if a.Kind == ActReject {
			a.Text = "550 5.7.1 Sender address verification failed"
		} else {
			a.Text = "451 4.7.1 Sender address verification failed: try again later"
		}
		return a, nil
	}
	if len(text) < 5 || text[0] != want || !isDigit(text[1]) || !isDigit(text[2]) || text[3] != ' ' {
		return Action{}, fmt.Errorf("verdict %q: the reply must start with a %cxx code and a space", s, want)
	}
	if strings.ContainsAny(text, "\r\n") {
		return Action{}, fmt.Errorf("verdict %q: the reply must be one line", s)
	}
	a.Text = text
	return a, nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func (a Action) String() string {
	if a.Text != "" {
		return a.Kind.String() + " " + a.Text
	}
	return a.Kind.String()
}

// reply is the answer the action gives to the event.
func (a Action) reply() pmult.Reply {
	switch a.Kind {
	case ActAccept:
		return pmult.Reply{Verdict: pmult.Accept}
	case ActReject:
		return pmult.Reply{Verdict: pmult.Reject, Text: a.Text}
	case ActTempfail:
		return pmult.Reply{Verdict: pmult.Tempfail, Text: a.Text}
	}
	return pmult.Reply{Verdict: pmult.Continue}
}

// Outcome is what a verification came to, as a verdict is chosen by: a
// probe result, a domain without mail host, or the soft timeout.
type Outcome uint8

// Outcomes, one verdict each.
const (
	OutSuccess     Outcome = iota // the address was accepted
	OutNotFound                   // the address was refused (5xx at RCPT)
	OutNoMailHost                 // the domain has no mail host (NXDOMAIN, no MX and no address, null MX)
	OutTempFailure                // 4xx, or no host could be reached
	OutFailure                    // a permanent problem that proves nothing (e.g. the null sender refused)
	OutTimeout                    // the soft timeout expired while the client waited
	numOutcomes
)

var outcomeNames = [...]string{"success", "not_found", "no_mail_host", "temp_failure", "failure", "timeout"}

func (o Outcome) String() string { return outcomeNames[o] }

// Verdicts holds one action per outcome.
type Verdicts [numOutcomes]Action

// SenderVerdicts returns the defaults at MAIL.
func SenderVerdicts() Verdicts {
	return Verdicts{
		OutSuccess:     {Kind: ActContinue},
		OutNotFound:    {Kind: ActReject, Text: "550 5.1.7 Sender address rejected: undeliverable address"},
		OutNoMailHost:  {Kind: ActReject, Text: "550 5.1.8 Sender address rejected: domain has no mail host"},
		OutTempFailure: {Kind: ActTempfail, Text: "450 4.1.7 Sender address rejected: unverified address, try again later"},
		OutFailure:     {Kind: ActContinue},
		OutTimeout:     {Kind: ActTempfail, Text: "451 4.1.7 Sender address verification in progress, try again later"},
	}
}

// RecipientVerdicts returns the defaults at RCPT (call-ahead).
func RecipientVerdicts() Verdicts {
	return Verdicts{
		OutSuccess:     {Kind: ActContinue},
		OutNotFound:    {Kind: ActReject, Text: "550 5.1.1 Recipient address rejected: unknown at the next hop"},
		OutNoMailHost:  {Kind: ActReject, Text: "550 5.1.2 Recipient address rejected: domain has no mail host"},
		OutTempFailure: {Kind: ActTempfail, Text: "450 4.1.1 Recipient address rejected: unverified address, try again later"},
		OutFailure:     {Kind: ActContinue},
		OutTimeout:     {Kind: ActTempfail, Text: "451 4.1.1 Recipient address verification in progress, try again later"},
	}
}
