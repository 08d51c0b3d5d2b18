package layering

import (
	"go/build"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/jsonrtc/jsonrtc/"

// allowed lists, for each package of ours, the packages of ours it may
// import directly. A package missing here may import nothing of ours.
var allowed = map[string][]string{
	"protocol":              {},
	"store":                 {},
	"media/rtpengine":       {},
	"store/natsstore":       {"store"},
	"store/storetest":       {"store"},
	"cluster":               {},
	"session":               {"protocol"},
	"transport/ws":          {"protocol"},
	"transport/certs":       {},
	"transport/connlimit":   {},
	"transport/longpoll":    {"protocol"},
	"transport/forwarded":   {},
	"auth":                  {},
	"limits":                {},
	"presence/pidf":         {"protocol"},
	"notification/mwi":      {"protocol"},
	"sipgw":                 {"internal/ratelog", "protocol", "presence/pidf", "notification/mwi", "transport/certs"},
	"endpoint":              {"protocol"},
	"call":                  {"internal/ratelog", "protocol", "endpoint", "sipgw"},
	"messaging":             {"protocol", "endpoint"},
	"internal/subscription": {"protocol"},
	"internal/ratelog":      {},
	"internal/flood":        {"protocol"},
	"internal/logtest":      {},
	"presence":              {"internal/ratelog", "protocol", "endpoint", "internal/subscription", "presence/pidf"},
	"notification":          {"internal/ratelog", "protocol", "endpoint", "internal/subscription", "notification/mwi"},
	"client":                {"protocol", "session"},
	"web":                   {"sdk/js"},
	"sdk/js":                {},
	"interwork":             {"internal/ratelog", "protocol", "messaging", "presence", "presence/pidf", "notification", "notification/mwi", "sipgw"},
	"gateway":               {"internal/ratelog", "protocol", "session", "transport/ws", "transport/longpoll", "transport/certs", "transport/connlimit", "transport/forwarded", "auth", "limits", "store", "cluster", "endpoint", "call", "interwork", "messaging", "presence", "notification", "sipgw"},
	"cmd/jsonrtcd":          {"gateway", "web", "transport/certs", "sipgw", "store", "store/natsstore", "cluster"},
	"cmd/jsonrtc-load":      {"client", "internal/flood", "protocol", "session"},
	"internal/layering":     {},
	"internal/testenv":      {},
	"internal/testreport":   {"internal/testenv"},
}

func TestImportsGoDownward(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	// Every package of ours must have its place in the table.
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case strings.HasPrefix(d.Name(), ".") && rel != ".", d.Name() == "node_modules", d.Name() == "testdata", rel == "test", strings.HasPrefix(rel, "test"+string(filepath.Separator)):
			return filepath.SkipDir
		}
		if p, err := build.ImportDir(path, 0); err == nil && len(p.GoFiles) > 0 {
			if _, ok := allowed[filepath.ToSlash(rel)]; !ok {
				t.Errorf("package %s has no place in the layering table", rel)
			}
		}
		return nil
	})
	for pkg, ok := range allowed {
		p, err := build.ImportDir(filepath.Join(root, pkg), 0)
		if err != nil {
			if _, isNoGo := err.(*build.NoGoError); isNoGo {
				continue
			}
			t.Errorf("%s: %v", pkg, err)
			continue
		}
		okSet := map[string]bool{}
		for _, o := range ok {
			okSet[o] = true
		}
		var bad []string
		for _, imp := range p.Imports {
			if rest, ours := strings.CutPrefix(imp, module); ours && !okSet[rest] {
				bad = append(bad, rest)
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Errorf("%s imports %v, which is not below it", pkg, bad)
		}
	}
}

// TestHandlersStandAlone: the package handlers meet only in the gateway.
// What they need of a session is package endpoint's; the SIP side is the
// call handler's alone.
func TestHandlersStandAlone(t *testing.T) {
	handlers := []string{"call", "messaging", "presence", "notification"}
	for _, h := range handlers {
		for _, imp := range allowed[h] {
			if slices.Contains(handlers, imp) || (imp == "sipgw" && h != "call") {
				t.Errorf("%s may import %s", h, imp)
			}
		}
	}
}
