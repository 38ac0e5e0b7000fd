// Package callouttest provides what tests of the callout service need and
// nothing else: scriptable SMTP target servers (accepting, rejecting,
// greylisting, slow, dropping, 4xx greeting, STARTTLS, catch-all) and an
// in-process DNS server (github.com/miekg/dns) serving MX, A and AAAA
// records for test domains, both on loopback addresses. Like
// net/http/httptest, it is imported by tests only.
package callouttest
