package deadline

import "time"

// Slack is the share of a timeout by which a kept deadline may come late.
const Slack = 16

// Lazy is the deadline in force in one direction of a connection, as last
// set through it. The zero value knows of none.
type Lazy struct{ at time.Time }

// Next returns the deadline for an operation starting at now with timeout
// d, and whether it must be set: false when the one in force, between
// now+d and now+d+d/Slack, serves.
func (l *Lazy) Next(now time.Time, d time.Duration) (time.Time, bool) {
	lo := now.Add(d)
	if !l.at.IsZero() && !l.at.Before(lo) && !l.at.After(lo.Add(d/Slack)) {
		return l.at, false
	}
	l.at = lo.Add(d / Slack)
	return l.at, true
}

// Forget says the connection's deadline was set some other way: the next
// Next sets one.
func (l *Lazy) Forget() { l.at = time.Time{} }
