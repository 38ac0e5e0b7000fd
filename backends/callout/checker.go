// checker.go: the two ways to probe. In process (the default), the
// embedded Verifier runs the probe with the soft timeouts; when the soft
// timeout (or the wait limit) expires, the address is queued for
// background completion under the hard timeouts, so the client's retry is
// answered from the cache. Through a calloutd server (ours or mailfromd's
// calloutd 8.15), the server does the same on its side: pmult sends the
// soft timeouts (TIMEOUT) and drops the connection when the wait limit
// expires, which makes the server complete the address in the background.

package callout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/internal/breaker"
)

// checkResult is what one verification came to.
type checkResult struct {
	out    smtpprobe.Outcome
	cached bool
}

// checker verifies one address, within ctx (the wait limit).
type checker interface {
	check(ctx context.Context, req smtpprobe.Request) (checkResult, error)
}

// local is the in-process checker.
type local struct {
	v    *callout.Verifier
	soft smtpprobe.Timeouts
	log  *slog.Logger
}

func (l *local) check(ctx context.Context, req smtpprobe.Request) (checkResult, error) {
	req.Timeouts = l.soft
	out, cached := l.v.Verify(ctx, req, nil)
	if !cached && out.Retry && !out.Result.Definite() {
		if !l.v.Enqueue(req) {
			l.log.Warn("callout: background queue full, address not completed", "sid", req.Tag, "email", req.Email)
		}
	}
	return checkResult{out: out, cached: cached}, nil
}

// remote asks a calloutd server; one connection per MTA session, opened
// at its first verification.
type remote struct {
	addr syntax.Address
	soft smtpprobe.Timeouts
	brk  *breaker.Breaker // the backend's: opens fail fast while calloutd is down

	mu sync.Mutex
	cl *callout.Client
}

// errRemote wraps the failures of the calloutd conversation.
var errRemote = errors.New("calloutd")

func (r *remote) check(ctx context.Context, req smtpprobe.Request) (checkResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cl == nil {
		dl, _ := ctx.Deadline()
		at, err := r.brk.Admit(ctx, dl, fmt.Sprintf("%s %s", errRemote, r.addr))
		if err != nil {
			return checkResult{}, err
		}
		cl, err := r.open(ctx, req)
		switch {
		case err == nil:
			at.Record(nil)
		case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
			at.Abandon() // the MTA session went away
		default:
			at.Record(err)
		}
		if err != nil {
			return checkResult{}, err
		}
		r.cl = cl
	}
	res, err := r.cl.Verify(ctx, req)
	if err != nil {
		// The conversation is in an unknown state: drop it (the server
		// completes what it was doing in the background).
		r.cl.Close()
		r.cl = nil
		if ctx.Err() != nil {
			o := smtpprobe.Outcome{Result: smtpprobe.Timeout, Retry: true, Err: ctx.Err()}
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				o.Result = smtpprobe.TempFailure
			}
			return checkResult{out: o}, nil
		}
		return checkResult{}, fmt.Errorf("%w %s: %w", errRemote, r.addr, err)
	}
	return checkResult{out: smtpprobe.Outcome{Result: res}}, nil
}

// open connects and sends the soft timeouts and the session id.
func (r *remote) open(ctx context.Context, req smtpprobe.Request) (*callout.Client, error) {
	cl, err := callout.Dial(ctx, r.addr.Network, r.addr.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errRemote, r.addr, err)
	}
	if err := cl.SetTimeouts(ctx, r.soft); err != nil {
		cl.Close()
		return nil, fmt.Errorf("%w %s: TIMEOUT: %w", errRemote, r.addr, err)
	}
	if req.Tag != "" {
		if err := cl.SID(ctx, req.Tag); err != nil {
			cl.Close()
			return nil, fmt.Errorf("%w %s: SID: %w", errRemote, r.addr, err)
		}
	}
	return cl, nil
}

func (r *remote) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cl != nil {
		r.cl.Close()
		r.cl = nil
	}
}
