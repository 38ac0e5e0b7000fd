// mtaconfig_smtp.go: the MTA side of the SMTP front ([smtp]): for
// `pmult mta-config postfix`, the master.cf services of a before-queue
// proxy filter (smtpd_proxy_filter) or an after-queue content filter
// (content_filter), each with its reinjection service on [smtp] next_hop;
// for `pmult mta-config exim`, the router and transport that send mail
// through pmult after the queue and the daemon port it comes back on. And
// `pmult check`'s summary and warnings about [smtp].

package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/mailmux/mailmux/config"
)

// hostPort splits an inet address into host and port ("" for unix).
func hostPort(a config.Address) (host, port string) {
	if a.Network == "unix" {
		return "", ""
	}
	i := strings.LastIndexByte(a.Addr, ':')
	if i < 0 {
		return a.Addr, ""
	}
	return strings.Trim(a.Addr[:i], "[]"), a.Addr[i+1:]
}

// reinjectNets is the reinjection smtpd's mynetworks and
// smtpd_authorized_xforward_hosts: loopback, and a next hop on a
// non-loopback address, which pmult on the same host connects from. (A
// pmult on another host connects from its own address: the output says
// to add it.) Comma-separated: a master.cf -o value has no spaces.
func reinjectNets(s *config.Smtp) string {
	nets := "127.0.0.0/8"
	if h, _ := hostPort(s.NextHopAddr); h != "" {
		if a, err := netip.ParseAddr(h); err == nil && !a.Unmap().IsLoopback() {
			nets += "," + netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()).String()
		}
	}
	return nets
}

// smtpPostfix prints the Postfix side of the SMTP front.
func smtpPostfix(cfg *config.Config, w io.Writer) {
	s := &cfg.Smtp
	if len(s.ListenAddrs) == 0 {
		return
	}
	front := s.ListenAddrs[0]
	fh, fp := hostPort(front)
	nh, np := hostPort(s.NextHopAddr)
	fmt.Fprintf(w, "\n# pmult's SMTP front ([smtp] mode = %s): listener %s, next hop %s\n", s.Mode, front, s.NextHopAddr)
	if len(s.TrustedNets) == 0 {
		fmt.Fprintln(w, "# [smtp] trusted is empty: pmult refuses Postfix's XFORWARD, and the backends see Postfix,")
		fmt.Fprintf(w, "# not the real client, as the client. Set trusted = [\"%s\"] in [smtp].\n", "127.0.0.1")
	}
	if s.Mode == "after" {
		if front.Network == "unix" {
			fmt.Fprintln(w, "# Postfix's smtp(8) client cannot deliver to a unix socket: give [smtp] an inet listener.")
		}
		fmt.Fprintln(w, "# main.cf")
		fmt.Fprintf(w, "content_filter = pmult:[%s]:%s\n", fh, fp)
		fmt.Fprintln(w, "# master.cf: the transport to pmult, and the reinjection service pmult relays to")
		fmt.Fprintln(w, "pmult     unix  -       -       n       -       10      smtp")
		fmt.Fprintln(w, "  -o smtp_send_xforward_command=yes")
		fmt.Fprintln(w, "  -o disable_mime_output_conversion=yes")
		fmt.Fprintln(w, "  -o smtp_generic_maps=")
		fmt.Fprintf(w, "  -o smtp_data_done_timeout=%ds\n", int(s.NextHopDataTimeout.Seconds())+60)
	} else {
		fmt.Fprintln(w, "# master.cf: the public smtpd hands each session to pmult before the queue")
		fmt.Fprintln(w, "smtp      inet  n       -       y       -       20      smtpd")
		if front.Network == "unix" {
			fmt.Fprintf(w, "  -o smtpd_proxy_filter=unix:%s\n", front.Addr)
		} else {
			fmt.Fprintf(w, "  -o smtpd_proxy_filter=%s:%s\n", fh, fp)
		}
		fmt.Fprintln(w, "  -o smtpd_proxy_options=speed_adjust")
		// Postfix waits smtpd_proxy_timeout (100s) for each answer; pmult's
		// end of data includes the backends and the next hop.
		fmt.Fprintf(w, "  -o smtpd_proxy_timeout=%ds\n", int(s.NextHopDataTimeout.Seconds())+60)
	}
	nets := reinjectNets(s)
	if nets != "127.0.0.0/8" {
		fmt.Fprintln(w, "# the reinjection service trusts pmult's address; pmult on another host: add its address to mynetworks and smtpd_authorized_xforward_hosts")
	}
	if s.NextHopAddr.Network == "unix" {
		fmt.Fprintf(w, "%s unix n    -       n       -       -       smtpd\n", s.NextHopAddr.Addr)
	} else {
		fmt.Fprintf(w, "%s:%s inet n  -       n       -       -       smtpd\n", nh, np)
	}
	fmt.Fprintln(w, "  -o content_filter=")
	fmt.Fprintln(w, "  -o smtpd_proxy_filter=")
	fmt.Fprintln(w, "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters")
	fmt.Fprintln(w, "  -o smtpd_client_restrictions=")
	fmt.Fprintln(w, "  -o smtpd_helo_restrictions=")
	fmt.Fprintln(w, "  -o smtpd_sender_restrictions=")
	fmt.Fprintln(w, "  -o smtpd_relay_restrictions=")
	fmt.Fprintln(w, "  -o smtpd_recipient_restrictions=permit_mynetworks,reject")
	fmt.Fprintln(w, "  -o smtpd_data_restrictions=")
	fmt.Fprintf(w, "  -o mynetworks=%s\n", nets)
	fmt.Fprintf(w, "  -o smtpd_authorized_xforward_hosts=%s\n", nets)
	if s.LMTP {
		fmt.Fprintln(w, "# [smtp] lmtp = true: the next hop must speak LMTP (a Postfix smtpd does not); set lmtp = false")
	}
}

// smtpExim prints the Exim side of the SMTP front (after the queue).
func smtpExim(cfg *config.Config, w io.Writer, stderr io.Writer) int {
	s := &cfg.Smtp
	if len(s.ListenAddrs) == 0 {
		fmt.Fprintln(stderr, "pmult mta-config exim: the configuration has no [smtp] listen address")
		return exitConfig
	}
	front := s.ListenAddrs[0]
	if front.Network == "unix" {
		fmt.Fprintln(stderr, "pmult mta-config exim: Exim's smtp transport needs an inet [smtp] listener")
		return exitConfig
	}
	fh, fp := hostPort(front)
	nh, np := hostPort(s.NextHopAddr)
	if s.Mode != "after" {
		fmt.Fprintln(w, "# Exim has no before-queue proxy: run the SMTP front with [smtp] mode = \"after\".")
	}
	fmt.Fprintf(w, "# Exim: mail goes through pmult's SMTP front (%s) once, after the queue, and comes back\n", front)
	fmt.Fprintf(w, "# on %s (pmult's next_hop), where it is delivered as usual.\n", s.NextHopAddr)
	fmt.Fprintln(w, "# main section")
	if s.NextHopAddr.Network == "unix" {
		fmt.Fprintln(w, "# next_hop is a unix socket: Exim's daemon listens on inet only; give [smtp] next_hop an inet address.")
	} else {
		fmt.Fprintf(w, "daemon_smtp_ports = 25 : %s\n", np)
		fmt.Fprintf(w, "local_interfaces = <; 0.0.0.0.25 ; %s.%s\n", nh, np)
	}
	fmt.Fprintln(w, "# routers section: first router")
	fmt.Fprintln(w, "pmult_filter:")
	fmt.Fprintln(w, "  driver = manualroute")
	fmt.Fprintf(w, "  condition = ${if !={$received_port}{%s}}\n", np)
	fmt.Fprintln(w, "  transport = pmult_smtp")
	fmt.Fprintf(w, "  route_list = * %s byname\n", fh)
	fmt.Fprintln(w, "  self = send")
	fmt.Fprintln(w, "# transports section")
	fmt.Fprintln(w, "pmult_smtp:")
	fmt.Fprintln(w, "  driver = smtp")
	fmt.Fprintf(w, "  port = %s\n", fp)
	fmt.Fprintln(w, "  allow_localhost")
	fmt.Fprintln(w, "  hosts_avoid_tls = *")
	fmt.Fprintf(w, "  data_timeout = %ds\n", int(s.NextHopDataTimeout.Seconds())+60)
	return 0
}

// checkSmtp prints the [smtp] summary line and its warnings for `pmult check`.
func checkSmtp(cfg *config.Config, file string, stdout, stderr io.Writer) {
	s := &cfg.Smtp
	if len(s.ListenAddrs) == 0 {
		return
	}
	var ls []string
	for i, a := range s.ListenAddrs {
		l := a.String()
		if s.ListenNames[i] != "" {
			l = s.ListenNames[i] + "=" + l
		}
		ls = append(ls, l)
	}
	fmt.Fprintf(stdout, "%s: SMTP front (mode %s): listen %s; next hop %s", file, s.Mode, strings.Join(ls, ", "), s.NextHopAddr)
	if s.LMTP {
		fmt.Fprint(stdout, " (LMTP)")
	}
	fmt.Fprintf(stdout, "; trusted %s; max_message %d, max_recipients %d\n", trustedOrNone(s), s.MaxMessage, s.MaxRecipients)
	if len(s.TrustedNets) == 0 {
		fmt.Fprintf(stderr, "%s: warning: [smtp] trusted is empty: XCLIENT/XFORWARD are refused, the backends see the MTA as the client\n", file)
	}
	if s.Mode == "after" && s.LoopMarker == "-" {
		fmt.Fprintf(stderr, "%s: warning: [smtp] mode = \"after\" with loop_marker = \"-\": a misrouted reinjection loops through the backends\n", file)
	}
}

func trustedOrNone(s *config.Smtp) string {
	if len(s.Trusted) == 0 {
		return "none"
	}
	return strings.Join(s.Trusted, " ")
}
