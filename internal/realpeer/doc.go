// Package realpeer runs real mail software from Go tests: private Postfix
// (also with an SMTP filter before or after its queue: StartPostfixFilter),
// Sendmail and Exim instances, the scriptable pymilter milter
// testdata/pymilter/actions.py, mailfromd as a milter, OpenDKIM,
// mailfromd's mtasim, calloutd and Redis. It is a test helper for the
// project's end-to-end tests, not production code.
//
// Everything a test starts lives in a private directory under the system
// temp directory (see Dir), listens on free loopback ports (see FreePort),
// and is stopped by PID in t.Cleanup. Nothing under /etc or /var is used,
// except the unpacked Sendmail and Exim packages cached in /var/tmp (Exim
// sees a private copy of /etc/passwd and /etc/group, bind-mounted in a
// mount namespace of its own).
//
// The software must be installed first: scripts/install-test-deps.sh does
// that on Debian 12 (as root). Tests call Require, which fails (never skips)
// when a tool is missing, so a missing dependency cannot pass unnoticed.
//
// Typical use:
//
//	realpeer.Require(t, "postfix", "swaks", "pymilter")
//	spec, events := realpeer.StartPyMilter(t, realpeer.PyPlan{
//		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Test", Value: "yes"}},
//	})
//	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
//	out, err := pf.Send(t, "--to", "b@example.com")
//	msgs := pf.WaitDelivered(t, 1, 10*time.Second)
//	_ = events() // what the milter saw, one JSON line per callback
//
// Milter socket specs are in libmilter form ("inet:PORT@127.0.0.1",
// "unix:/path"); PostfixMilter converts one to Postfix's form.
package realpeer
