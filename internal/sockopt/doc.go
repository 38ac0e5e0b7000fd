// Package sockopt holds socket tweaks shared by the milter front end and
// the backend client. QuickAck sends a pending delayed ACK at once (Linux
// TCP_QUICKACK): a peer that writes two packets in two segments without
// TCP_NODELAY (libmilter's modification then final reply; Sendmail's macro
// packet then its command) otherwise waits ~40 ms for our delayed ACK
// before Nagle lets its second segment go.
package sockopt
