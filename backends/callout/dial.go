// dial.go: probes never connect to loopback, private, link-local,
// unspecified or multicast addresses (an MX record pointing at another
// host's internal address, or at ours) unless probe_networks allows them.

package callout

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// guardDial returns the prober's dialer with the address check.
func guardDial(p *smtpprobe.Prober, allow []netip.Prefix, log *slog.Logger) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return nil, fmt.Errorf("callout: dial %s: %w", address, err)
		}
		if !probeAllowed(ap.Addr(), allow) {
			log.Warn("callout: not probing an internal address (allow it with probe_networks)", "address", address)
			return nil, fmt.Errorf("callout: %s is a loopback, private or link-local address (not in probe_networks)", ap.Addr())
		}
		d := net.Dialer{KeepAlive: -1}
		if p.SourceIP.IsValid() && p.SourceIP.Is4() == ap.Addr().Unmap().Is4() {
			d.LocalAddr = &net.TCPAddr{IP: p.SourceIP.AsSlice()}
		}
		return d.DialContext(ctx, network, address)
	}
}

// probeAllowed reports whether a probe may connect to a.
func probeAllowed(a netip.Addr, allow []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range allow {
		if p.Contains(a) {
			return true
		}
	}
	return !(a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() ||
		a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast())
}
