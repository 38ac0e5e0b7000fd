package macros

import (
	"reflect"
	"testing"
)

func TestForms(t *testing.T) {
	for in, want := range map[string][2]string{
		"{daemon_name}": {"daemon_name", "{daemon_name}"},
		"daemon_name":   {"daemon_name", "{daemon_name}"},
		"i":             {"i", "i"},
		"{i}":           {"i", "i"},
		"{":             {"{", "{"},
	} {
		if got := Normalize(in); got != want[0] {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want[0])
		}
		if got := Wire(in); got != want[1] {
			t.Errorf("Wire(%q) = %q, want %q", in, got, want[1])
		}
	}
}

func TestUnionSplit(t *testing.T) {
	got := Union(PostfixDefaults[EnvFrom], Split("{auth_authen}, tls_vrfy i {client_addr}")...)
	want := []string{"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}",
		"{mail_mailer}", "{tls_vrfy}", "{client_addr}"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Union = %q, want %q", got, want)
	}
}
