// macros.go: name forms, stages, per-MTA default lists, and the
// angle-bracket stripper of SMTP paths (StripBrackets).

package macros

import "strings"

// Normalize returns a macro name without braces: "{daemon_name}" and
// "daemon_name" both give "daemon_name"; "i" stays "i".
func Normalize(name string) string {
	if len(name) >= 2 && name[0] == '{' && name[len(name)-1] == '}' {
		return name[1 : len(name)-1]
	}
	return name
}

// Wire returns the form MTAs send: single characters bare, longer names
// in braces ("i", "{daemon_name}").
func Wire(name string) string {
	n := Normalize(name)
	if len(n) == 1 {
		return n
	}
	return "{" + n + "}"
}

// QueueID is the name of the macro carrying the MTA's queue id, in the
// form MTAs send it.
const QueueID = "i"

// Stage is a macro stage, numbered as the milter protocol's SMFIM_*
// (milterproto.Stage, which this package does not import: convert
// explicitly; internal/milterkind tests that the two agree).
type Stage int

// Stages.
const (
	Connect Stage = iota
	Helo
	EnvFrom
	EnvRcpt
	Data
	EOM
	EOH
	NumStages
)

var stageNames = [...]string{"connect", "helo", "envfrom", "envrcpt", "data", "eom", "eoh"}

func (s Stage) String() string {
	if s >= 0 && s < NumStages {
		return stageNames[s]
	}
	return "unknown"
}

// PostfixParam is the main.cf parameter holding a stage's macro list.
var PostfixParam = [NumStages]string{
	"milter_connect_macros", "milter_helo_macros", "milter_mail_macros", "milter_rcpt_macros",
	"milter_data_macros", "milter_end_of_data_macros", "milter_end_of_header_macros",
}

// SendmailOption is the sendmail.mc define holding a stage's macro list.
var SendmailOption = [NumStages]string{
	"confMILTER_MACROS_CONNECT", "confMILTER_MACROS_HELO", "confMILTER_MACROS_ENVFROM",
	"confMILTER_MACROS_ENVRCPT", "confMILTER_MACROS_DATA", "confMILTER_MACROS_EOM",
	"confMILTER_MACROS_EOH",
}

// PostfixDefaults are Postfix's default lists (mail_params.h).
var PostfixDefaults = [NumStages][]string{
	{"j", "{daemon_name}", "{daemon_addr}", "v", "_"},
	{"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	{"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}"},
	{"i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"},
	{"i"},
	{"i"},
	{"i"},
}

// SendmailDefaults are Sendmail's default lists (cf/m4/cfhead.m4).
var SendmailDefaults = [NumStages][]string{
	{"j", "_", "{daemon_name}", "{if_name}", "{if_addr}"},
	{"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	{"i", "{auth_type}", "{auth_authen}", "{auth_ssf}", "{auth_author}", "{mail_mailer}", "{mail_host}", "{mail_addr}"},
	{"{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}"},
	nil,
	{"{msg_id}"},
	nil,
}

// Union appends to have every name of add not already in it (compared
// in normalised form), keeping order; names are returned in wire form.
func Union(have []string, add ...string) []string {
	seen := make(map[string]bool, len(have)+len(add))
	out := make([]string, 0, len(have)+len(add))
	for _, l := range [][]string{have, add} {
		for _, n := range l {
			if n == "" {
				continue
			}
			k := Normalize(n)
			if !seen[k] {
				seen[k] = true
				out = append(out, Wire(k))
			}
		}
	}
	return out
}

// Split splits a macro list as MTAs and symlists write it (spaces or
// commas between names).
func Split(list string) []string {
	return strings.FieldsFunc(list, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
}

// StripBrackets returns an SMTP path without its angle brackets and the
// space around it: "<a@b>" and " <a@b> " give "a@b", "a@b" stays.
func StripBrackets(a string) string {
	a = strings.TrimSpace(a)
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		return a[1 : len(a)-1]
	}
	return a
}
