// procs.go: GOMAXPROCS for the table header.

package main

import "runtime"

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
