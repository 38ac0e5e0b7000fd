// Package smtpprobe is the SMTP prober of the callout service: given an
// address and a verification mode it finds the mail hosts (MX records by
// preference with github.com/miekg/dns, A/AAAA when there is no MX), talks
// SMTP to them (greeting, EHLO with HELO fallback, optional STARTTLS,
// MAIL FROM, RCPT TO, QUIT) under per-stage timeouts, and says whether the
// address exists.
//
// Results keep mailfromd's meanings: success (RCPT accepted), not_found
// (a 5xx answer: the address, the sender or the client was refused; the
// domain does not exist), failure (a permanent problem that proves nothing,
// such as an empty domain or a null MX), temp_failure (a 4xx answer, or no
// host could be asked), timeout (the probe's overall deadline ran out).
//
// The MX walk follows Postfix's SMTP client: hosts that cannot be reached,
// do not greet, or greet with 4xx are skipped; once a host has greeted, its
// answer ends the walk. Prober.ContinueAfterTempFail restores what
// mailfromd's calloutd does (a 4xx or an I/O error after the greeting
// moves on to the next MX).
//
// The package knows nothing of the calloutd line protocol, caching or
// rate limits (see package callout); it imports only the standard library
// and miekg/dns. It has no package-level state.
package smtpprobe
