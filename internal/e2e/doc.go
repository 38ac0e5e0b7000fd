// Package e2e holds the end-to-end tests of pmult against real software:
// a private Postfix with smtpd_milters pointing at the pmult binary, in
// front of real milters (pymilter scripts, mailfromd), mailfromd's mtasim
// driving pmult, and failure cases with real backends killed or hung. The
// tests start everything themselves (see internal/realpeer).
package e2e
