// Package config loads pmult's TOML configuration: the schema (Config,
// Backend), defaults, and validation that reports every problem of a file at
// once (a *multierror.Error of *FieldError, each naming the file, the
// backend and the key). It also parses the two kinds of values milter
// configurations are written in: socket addresses in the Sendmail, Postfix
// and mailfromd dialects (ParseAddress) and time intervals as Go durations
// or mailfromd intervals (ParseDuration, Duration).
//
// A configuration, every key optional except a backend's name and url:
//
//	listen = ["inet:127.0.0.1:7357", "unix:/run/pmult/pmult.sock"]
//	pidfile = "/run/pmult/pmult.pid"
//	max_sessions = 0              # 0: no limit
//	max_packet = 1048576          # bytes, from the MTA
//	max_backend_packet = 67108864 # bytes, from a backend
//	max_message = 67108864        # bytes; bigger: 552 5.3.4 (0: no limit)
//	spool_memory = 1048576        # bytes of a message kept in memory for replay
//	memory_budget = 268435456     # bytes in memory, all messages together
//	spool_dir = "/var/spool/pmult" # default: $TMPDIR or /tmp
//	shutdown_timeout = "30s"
//	content = "serial"            # or "parallel"
//	open_timeout = "10s"          # every backend negotiated by then
//	read_only = "in_order"        # or "live": read-only backends see the original
//	merge = "strongest"           # or "chain": the first objection wins
//	log_level = "info"            # debug, info, warn, error
//	log_tag = "pmult"
//
//	[[backend]]
//	name = "dkim"
//	url = "inet:8891@127.0.0.1"   # Sendmail style
//	on_failure = "accept"         # accept, tempfail, reject, discard
//
//	[[backend]]
//	name = "spam"
//	url = "unix:///run/spamass/spamass.sock" # mailfromd style
//	connect_timeout = 300         # an integer is seconds
//	read_timeout = "5 minutes"
//	write_timeout = "30 seconds"
//	eom_timeout = "2 hours 35 seconds"
//	mode = "evaluate"             # shadow: log only
//	protocol = 6                  # highest milter version offered, 2..6
//
// Keys left out get the defaults in the Default* constants; a key given
// explicitly must be valid (a timeout of "0s" is an error, not the default).
// Backend errors name the backend by its index among the [[backend]] tables,
// counting from 0, and its name.
package config
