package interop

import (
	"os"
	"testing"

	"github.com/jsonrtc/jsonrtc/sipgw"
)

// TestMain applies the process-wide sipgo settings as cmd/jsonrtcd does
// (the UDP size limit, T1), so that the suites run what production runs.
func TestMain(m *testing.M) {
	sipgw.SetProcessDefaults(sipgw.Config{})
	os.Exit(m.Run())
}
