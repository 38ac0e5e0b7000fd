// Package smtp is pmult's SMTP front end, server side: for MTAs without
// milter support (Exim, OpenSMTPD) or as Postfix's smtpd_proxy_filter /
// content_filter, it turns each SMTP session into the engine's events
// (the real client from XCLIENT, XFORWARD or the PROXY protocol; HELO,
// MAIL and RCPT with their ESMTP parameters; the message as header, EOH
// and body events as it arrives; EOM; other commands as Unknown events),
// answers the client with the merged verdicts, and relays each accepted
// message, every edit applied, to a next hop (NextHop: package
// adapters/smtp/relay) in the same transaction: the client's 250 at end
// of data is the next hop's. A verdict about a header, EOH or body chunk
// is the answer to the final dot (the client hears nothing before it), so
// the engine posts the content to the backends without waiting for each
// answer (Offer.NoReply and DeferContent, as the milter front with
// Postfix's NR_HDR/NR_EOH/NR_BODY).
//
// The server is its own command loop on a bufio reader rather than
// go-smtp's server: go-smtp v0.25.1 has no hook for XCLIENT, XFORWARD,
// ETRN or unknown commands, cannot re-greet after XCLIENT, and keeps its
// dot reader unexported; net/textproto's dot reader ends the data at a
// bare-LF "." line (SMTP smuggling). go-smtp's types (MailOptions,
// RcptOptions, SMTPError) carry the envelope to the next hop. The PROXY
// header is parsed by github.com/pires/go-proxyproto.
//
// Limits and replies follow Postfix's smtpd (see server.go's tunables):
// line_length_limit (500 5.5.2), smtpd_recipient_limit (452 4.5.3),
// message_size_limit (552 5.3.4, SIZE too), header_size_limit, timeouts
// per stage (421 4.4.2), smtpd_forbid_bare_newline (normalize: the end of
// data is only CRLF "." CRLF; reject: 550 5.5.2),
// smtpd_forbid_unauth_pipelining and a client talking before the
// greeting (554 5.5.0, closed), commands out of order (503 5.5.1),
// smtpd_hard_error_limit (421 4.7.0), smtpd_forbidden_commands (221);
// each with one log line naming the client. BDAT is not offered (a BDAT
// closes the connection: its octets would be read as commands), nor are
// STARTTLS and AUTH: the front sits behind an MTA or a TLS-terminating
// proxy, whose details arrive by XCLIENT (LOGIN) and PROXY v2 (SSL TLV).
//
// Relaying (deliver.go): before the queue the next-hop transaction
// follows the client's: the next hop is dialled while the backends take
// MAIL, each recipient goes to both at once and the client gets the worse
// answer (one the backends refuse but the next hop took is dropped when
// the envelope is replayed at end of data); at end of data the edits are
// applied (headers by pmult.HeaderList, Postfix's rules; sender and
// recipient changes reset the next-hop transaction and replay it; a body
// replacement; quarantine as a header, 451 or 550; discard: 250, nothing
// relayed) and the client's answer is the next hop's (LMTP: all accepted
// 250, else the first refusal; our own 250 text carries the front's queue
// id, the one `pmult why` finds). An LMTP next hop that accepts some
// recipients and refuses others at end of data has delivered to the
// accepted ones, but SMTP has one reply per message: the client gets the
// first refusal for all of them and, on a 4xx, sends the message again to
// every recipient (a duplicate for the accepted ones; on a 5xx it bounces
// the message for all, the accepted ones included). The front logs a
// warning naming the accepted recipients ("LMTP next hop accepted some
// recipients and refused others", accepted=...), so that an administrator
// sees the duplicates coming. The message is held (internal/spool)
// only until then. After the queue it is the same path; a message with
// our own loop marker (LoopMarker: Hostname) is relayed unfiltered, with
// that one marker, and its decision record says so (Session.Note: the
// policy "loop_marker:pmult@header=unfiltered" on the decision line).
// The decision record of a message ends with the client's reply after the
// relay (pmult.Session.HoldDecisions): a next-hop refusal or failure
// (policy next_hop) or a quarantine carried out as 451 or 550 (policy
// quarantine) shows as that reply, by "pmult", not as the backends'
// accept.
//
// Macros are sent with milter (Postfix) names: j, {daemon_name} (the
// listener's name), {daemon_addr}, {daemon_port} at CONNECT; {tls_version},
// {cipher}, {cert_subject}, {verify} at HELO from a PROXY v2 SSL TLV; i
// (the front's queue id, or XFORWARD IDENT), {auth_authen} and {auth_type}
// from XCLIENT LOGIN at MAIL. Offer.Front is "smtp": the configuration
// gives it the built-in milter table ([macros] dialect auto; config's
// Macros.Tables), then the global and listener tables apply, and the
// engine derives {client_addr} and the rest.
//
// It imports pmult, internal/connserve (the accept loop), internal/spool
// (messages held for the relay) and adapters/smtp/relay (relayhop.go
// only: the relay as a NextHop); of others, go-smtp, go-proxyproto and
// x/sys/unix (pending_linux.go).
package smtp
