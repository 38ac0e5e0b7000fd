// import.go: `pmult import -c /etc/mailfromd.conf [-o FILE]` converts the
// configuration of mailfromd's pmult into this pmult's TOML (package
// config/mailfromd) and reports on stderr, with file and line, every
// statement it cannot convert or converts only approximately.
//
// Exit status: 0 converted entirely; 1 something could not be converted
// (reported; the TOML is still written); 78 the result does not validate
// (each problem reported); 64 usage; 66 the input cannot be read.

package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/config/mailfromd"
)

func importCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pmult import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("c", "/etc/mailfromd.conf", "mailfromd configuration `file` to convert")
	fs.StringVar(in, "config", "/etc/mailfromd.conf", "mailfromd configuration `file` to convert")
	out := fs.String("o", "", "write the TOML to `file` (default: standard output)")
	if err := fs.Parse(args); err != nil {
		return 64
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pmult import: unexpected argument %q\n", fs.Arg(0))
		return 64
	}
	res, err := mailfromd.Convert(*in)
	if err != nil {
		fmt.Fprintf(stderr, "pmult import: %v\n", err)
		return 66
	}
	w := stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintf(stderr, "pmult import: %v\n", err)
			return 73
		}
		defer f.Close()
		w = f
	}
	io.WriteString(w, res.TOML)
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "pmult import: %s\n", n)
	}
	if _, err := config.Parse([]byte(res.TOML), "converted configuration"); err != nil {
		for _, e := range config.Errors(err) {
			fmt.Fprintf(stderr, "pmult import: %v\n", e)
		}
		return exitConfig
	}
	if res.Incomplete {
		return 1
	}
	return 0
}
