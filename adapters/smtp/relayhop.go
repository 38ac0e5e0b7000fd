// relayhop.go: package relay as the front's NextHop.

package smtp

import (
	"context"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailmux/mailmux/adapters/smtp/relay"
)

// RelayHop makes a relay.Relay the front's NextHop.
func RelayHop(r *relay.Relay) NextHop { return relayHop{r} }

type relayHop struct{ r *relay.Relay }

func (h relayHop) Begin(ctx context.Context, o Origin, from string, opts *gosmtp.MailOptions) (Txn, error) {
	t, err := h.r.Begin(ctx, o, from, opts)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (h relayHop) ClientReply(err error) *gosmtp.SMTPError { return relay.ClientReply(err) }

// FlushNextHop closes the idle cached connections of a RelayHop (at
// reload); other NextHops are left alone.
func FlushNextHop(h NextHop) {
	if rh, ok := h.(relayHop); ok {
		rh.r.Flush()
	}
}

// CloseNextHop closes a RelayHop's cached connections and stops caching
// (after the server's Shutdown); other NextHops are left alone.
func CloseNextHop(h NextHop) {
	if rh, ok := h.(relayHop); ok {
		rh.r.Close()
	}
}
