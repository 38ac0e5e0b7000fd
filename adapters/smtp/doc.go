// Package smtp is pmult's SMTP front end, server side: for MTAs without
// milter support (Exim, OpenSMTPD) or as Postfix's smtpd_proxy_filter /
// content_filter, it turns each SMTP session into the engine's events
// (the real client from XCLIENT, XFORWARD or the PROXY protocol; HELO,
// MAIL and RCPT with their ESMTP parameters; the message as header, EOH
// and body events as it arrives; EOM; other commands as Unknown events),
// answers the client with the merged verdicts, and relays each accepted
// message, every edit applied, to a next hop (NextHop: package
// adapters/smtp/relay) in the same transaction: the client's 250 at end
// of data is the next hop's.
//
// The server is its own command loop on a bufio reader rather than
// go-smtp's server: go-smtp v0.25.1 has no hook for XCLIENT, XFORWARD,
// ETRN or unknown commands, cannot re-greet after XCLIENT, and keeps its
// dot reader unexported; net/textproto's dot reader ends the data at a
// bare-LF "." line (SMTP smuggling). go-smtp's types (MailOptions,
// RcptOptions, SMTPError) carry the envelope to the next hop. The PROXY
// header is parsed by github.com/pires/go-proxyproto.
//
// Limits and replies follow Postfix's smtpd (see server.go's tunables).
// Macros are sent with milter (Postfix) names — j, {daemon_name} (the
// listener's name), {daemon_addr}, {daemon_port}, i, {auth_authen} and
// {auth_type} from XCLIENT LOGIN — under the dialect "smtp" (Offer.Front),
// which has no built-in table: the [macros] global and listener tables
// apply, and the engine derives {client_addr} and the rest.
package smtp
