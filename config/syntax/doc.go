// doc.go: package documentation.

// Package syntax parses the values milter configurations are written in,
// with the standard library only (so that small programs such as calloutd
// and mtasim can read them without linking pmult's engine):
//
//   - socket addresses in the Sendmail, Postfix and mailfromd dialects
//     (ParseAddress, Address);
//   - time intervals as Go durations, mailfromd intervals ("2 hours 35
//     seconds") or a number of seconds (ParseDuration, Duration);
//   - the typed values of one TOML table as the TOML decoder leaves them
//     (Checker: strings, enumerations, integers in a range, booleans,
//     positive timeouts), collecting one *KeyError per bad key so that a
//     configuration's every problem is reported at once, and the "did you
//     mean" suggestion for an unknown key (Suggest).
//
// Errors of ParseAddress and ParseDuration read like
//
//	config: address "inet:abc": bad port "abc" (not a number nor a known service name)
//
// (the "config: " prefix is dropped by config.FieldError, which says where
// the value was).
package syntax
