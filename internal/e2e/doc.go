// Package e2e holds the end-to-end tests of pmult against real software:
// a private Postfix with smtpd_milters pointing at the pmult binary (and
// a private Sendmail with INPUT_MAIL_FILTER), in front of real milters
// (pymilter scripts, mailfromd, OpenDKIM), compared with the MTA's own
// chain of the same milters; mailfromd's mtasim driving pmult; and failure
// cases with real backends killed or hung. The tests start everything
// themselves (see internal/realpeer).
package e2e
