// helpers_test.go: short names for pmulttest in the engine's tests, which
// live outside the package (pmulttest imports pmult).

package pmult_test

import "github.com/mailmux/mailmux/pmult/pmulttest"

type (
	step        = pmulttest.Step
	fakeBackend = pmulttest.Backend
	harness     = pmulttest.Harness
	logBuf      = pmulttest.LogBuffer
)

var (
	newFake = pmulttest.New
	open    = pmulttest.Open
	slot    = pmulttest.Slot
	slots   = pmulttest.Slots[*pmulttest.Backend]

	allOffer = pmulttest.AllOffer
	editor   = pmulttest.Editor
	reader   = pmulttest.Reader
)
