// Package config loads pmult's TOML configuration: the schema (Config,
// Milter, Backend, Meta1, Smtp), defaults, and validation that reports every
// problem of a file at once (a *multierror.Error of *FieldError, each
// naming the file, the backend and the key, with a "did you mean" for an
// unknown key), and builds the engine from it (Config.Engine). The syntax
// of socket addresses and durations is package config/syntax (stdlib
// only); Address, Duration, ParseAddress and ParseDuration here are its.
//
// A configuration, every key optional except a backend's name and address:
//
//	pidfile = "/run/pmult/pmult.pid"
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
//	[milter]                      # the MTAs' side (Postfix, Sendmail)
//	listen = ["inet:127.0.0.1:7357", "unix:/run/pmult/pmult.sock"]
//	max_connections = 0           # concurrent MTA connections; 0: no limit
//	max_packet = 1048576          # bytes, from the MTA
//
//	[[backend]]
//	name = "dkim"
//	type = "milter"               # the default
//	address = "inet:8891@127.0.0.1" # Sendmail style
//	on_failure = "accept"         # accept, tempfail, reject, discard
//
//	[[backend]]
//	name = "spam"
//	address = "unix:///run/spamass/spamass.sock" # mailfromd style
//	connect_timeout = 300         # an integer is seconds
//	read_timeout = "5 minutes"
//	write_timeout = "30 seconds"
//	eom_timeout = "2 hours 35 seconds"
//	mode = "evaluate"             # shadow: log only
//	milter_version = 6            # highest milter version offered, 2..6
//
// Running as a daemon (daemon.go): user and group, the account pmult
// switches to after binding when started as root; socket_owner,
// socket_group and socket_mode ("0666" by default), what its unix sockets
// are created with.
//
// A listen entry may carry a name, "name=address" (a named listener, e.g.
// "submission=unix:/run/pmult/sub.sock"): the name reaches the engine's
// sessions, and macro tables can be given per listener. [macros] holds the
// macro translation tables (macros.go): dialect ("auto": the built-in table
// of the front end; milter, meta1, none), rename, alias, default, set and
// drop, globally and under [macros.listener.NAME], for example
// set = { "connect:{daemon_name}" = "ORIGINATING" } on the submission
// listener; a milter backend has its own [backend.macros].
//
// A [[backend]] has a type, "milter" by default, "callout" or "filter".
// The keys every backend has (name, type, on_failure, mode, log_level,
// and the condition table if: which sessions and messages it takes part
// in, compiled by internal/cond at load) are read here; the others belong
// to the type's package, which parses, validates and builds it
// (backends/milter: address, the timeouts, milter_version, max_body,
// reuse, macros; backends/callout: the verification keys;
// backends/filter: its [[backend.rule]] tables). backends.go is the one
// table that knows the types.
//
// [smtp] (smtp.go) is the SMTP front end's table: its listeners, the next
// hop, limits and policies; internal/service builds adapters/smtp and its
// relay from it.
//
// config imports pmult, macros, internal/cond, config/syntax and the
// backend packages (backends/...), never a front end (adapters/...).
//
// Old spellings still load, with a warning in Config.Warnings naming the
// key that replaces each (pmult check prints them): top-level listen,
// max_sessions and max_packet (now [milter] listen, max_connections and
// max_packet) and a backend's url and protocol (now address and
// milter_version). Giving both spellings of one key is an error.
//
// Keys left out get the defaults in the Default* constants; a key given
// explicitly must be valid (a timeout of "0s" is an error, not the default).
// Backend errors name the backend by its index among the [[backend]] tables,
// counting from 0, and its name.
package config
