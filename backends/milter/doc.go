// Package milter is a remote milter as a pmult backend: the MTA (client)
// side of the milter protocol toward one filter over a unix, inet or inet6
// socket. It negotiates versions 2 to 6 with what the MTA offered, keeps
// the filter's masks and macro lists, forwards the MTA's macros (under
// the command letter of their stage; a filter that asked for a list at a
// stage gets exactly those macros, derived ones included: macros.go),
// re-chunks body data to 65535 bytes, relays SMFIR_PROGRESS, honours
// NR_*/SKIP, adjusts header leading spaces for filters without
// HDR_LEADSPC, and turns timeouts, protocol violations (reply texts
// Postfix calls malformed among them) and oversize replacement bodies into
// errors the engine acts on. A circuit breaker (internal/breaker) makes
// opens fail fast while the backend is down or wedged.
//
// Files: backend.go (Config, New, Open), session.go (negotiation,
// Handle/Post/Await, replies), edits.go (modification packets), pool.go
// (connections kept for reuse, Retire), macros.go (per-filter macros). Its sessions implement
// pmult.Pipeliner. It imports milterproto, macros, pmult and the internal
// packages breaker, milterkind and sockopt only. See README.md for its
// configuration, failure behaviour and metrics.
package milter
