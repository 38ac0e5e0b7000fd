package config

import (
	"go/build"
	"strings"
	"testing"
)

// config is plain data plus the backends' builders: it imports no front
// end (adapters/...); internal/service builds the fronts from its tables
// (doc.go).
func TestNoFrontImports(t *testing.T) {
	p, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range p.Imports {
		if strings.HasPrefix(imp, "github.com/mailmux/mailmux/adapters/") {
			t.Errorf("config imports the front-end package %s", imp)
		}
	}
}
