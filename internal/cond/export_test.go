package cond

import (
	"os"

	"github.com/mailmux/mailmux/pmult"
)

// CompileWithStat is Compile with the list files' stat replaced.
func CompileWithStat(prefix string, v any, stat func(*os.File) (os.FileInfo, error)) (pmult.Condition, []error) {
	return compile(&compiler{stat: stat}, prefix, v)
}
