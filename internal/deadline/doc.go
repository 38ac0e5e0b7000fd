// Package deadline keeps a connection's read or write deadline without
// setting it again for every read and write.
//
// pmult times each read and write (the MTA's and each backend's
// timeouts), a few dozen per message. Setting a deadline takes the
// runtime's poll-descriptor lock and moves a timer (about 2% of pmult's
// CPU per message through Postfix). A Lazy sets one for now+d+d/Slack and
// keeps it for every later operation whose own deadline, now+d, it does
// not precede, and does not pass by more than d/Slack: a timeout fires
// between d and d+d/Slack after the operation starts (6% late at most).
package deadline
