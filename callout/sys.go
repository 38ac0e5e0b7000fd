// sys.go: the one system error the accept loop treats as temporary.

package callout

import "syscall"

// syscallEMFILE is "too many open files": accept again after a pause.
const syscallEMFILE = syscall.EMFILE
