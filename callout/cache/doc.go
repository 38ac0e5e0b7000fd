// Package cache is the callout result cache: what a probe found out about
// an address (success or not_found) and about a domain (dead, down,
// catch-all), with separate lifetimes, kept in a Store: a bbolt file by
// default (Bolt), Redis when several hosts share it (Redis), or memory
// (Memory: lost when the process ends).
//
// Policy (Cache): success lives Positive (default 1 day, mailfromd's),
// not_found Negative (12 hours); temp_failure, failure and timeout are
// never stored per address, and a not_found never overwrites a success
// that has not expired (a failed probe never replaces a good entry).
// Domains without mail hosts are remembered DeadDomain (default 12 hours),
// domains whose hosts could not be reached DomainDown (default 5 minutes),
// catch-all findings CatchAll (default 1 day).
//
// Handles keeps a process's open stores, one per location, shared by the
// backends using it and across reloads (pmult's internal/service hands it
// to each engine's callout backends): a bbolt file is opened once per
// process, and a memory cache keeps its entries across a reload.
//
// The package imports callout/smtpprobe (for Result), bbolt and go-redis.
package cache
