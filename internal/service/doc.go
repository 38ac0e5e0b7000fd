// doc.go: package documentation.

// Package service runs pmult: it builds the engine from a loaded
// configuration, opens the listeners (unix sockets with their final mode
// from the bind and socket_owner/socket_group, see harden.go), writes the
// pidfile, switches to the configured user (privileges.go), serves the milter
// front (MTAs) and the MeTA1 front on one pmult.Switch, serves /metrics
// from counters owned by the process (they survive reloads), keeps the
// decision ring (also process-owned) and serves it on the control socket
// and at /why (control.go), reloads on request and drains on shutdown. cmd/pmult is flags, logging, signals
// and one call to Run.
package service
