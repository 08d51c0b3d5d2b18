package layering

import (
	"go/build"
	"go/parser"
	"go/token"
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
	"routing":               {},
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
	"auth":                  {"routing"},
	"limits":                {},
	"presence/pidf":         {"protocol"},
	"notification/mwi":      {"protocol"},
	"sipgw":                 {"internal/ratelog", "protocol", "routing", "presence/pidf", "notification/mwi", "transport/certs"},
	"endpoint":              {"protocol", "routing"},
	"call":                  {"internal/ratelog", "protocol", "routing", "endpoint", "sipgw", "media/rtpengine", "templates"},
	"messaging":             {"protocol", "routing", "endpoint"},
	"internal/subscription": {"protocol"},
	"internal/ratelog":      {},
	"internal/flood":        {"protocol"},
	"internal/logtest":      {},
	"internal/fakereg":      {},
	"internal/sipstream":    {},
	"internal/kamailio":     {},
	"presence":              {"internal/ratelog", "protocol", "routing", "endpoint", "internal/subscription", "presence/pidf"},
	"notification":          {"internal/ratelog", "protocol", "routing", "endpoint", "internal/subscription", "notification/mwi"},
	"client":                {"protocol", "session"},
	"web":                   {"sdk/js"},
	"sdk/js":                {},
	"interwork":             {"internal/ratelog", "limits", "protocol", "routing", "messaging", "presence", "presence/pidf", "notification", "notification/mwi", "sipgw"},
	"gateway":               {"internal/ratelog", "protocol", "routing", "session", "transport/ws", "transport/longpoll", "transport/certs", "transport/connlimit", "transport/forwarded", "auth", "limits", "store", "cluster", "endpoint", "call", "interwork", "messaging", "presence", "notification", "sipgw", "media/rtpengine", "push", "templates"},
	"cmd/jsonrtcd":          {"gateway", "routing", "templates", "auth", "web", "transport/certs", "sipgw", "store", "store/natsstore", "cluster"},
	"cmd/jsonrtc-load":      {"client", "internal/flood", "protocol", "session"},
	"internal/layering":     {},
	"internal/testenv":      {},
	"internal/natstest":     {"internal/testenv"},
	"internal/testreport":   {"internal/testenv"},
	"push":                  {},
	"templates":             {"protocol", "push", "routing", "sipgw"},
}

// onlyIn narrows allowed: a package of ours may import the named package
// from these files only. The gateway is the session controller; the SIP
// side is wired in one file (registrations, calls and the handlers'
// upstreams live in interwork and call), besides the sip section of its
// configuration.
var onlyIn = map[string]map[string][]string{
	"gateway": {"sipgw": {"config.go", "sip.go"}},
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestImportsGoDownward(t *testing.T) {
	root := moduleRoot()
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

// TestImportsOnlyIn checks onlyIn, file by file (tests excluded, as in
// TestImportsGoDownward).
func TestImportsOnlyIn(t *testing.T) {
	root := moduleRoot()
	for pkg, imports := range onlyIn {
		p, err := build.ImportDir(filepath.Join(root, pkg), 0)
		if err != nil {
			t.Fatalf("%s: %v", pkg, err)
		}
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, name), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				rest, ours := strings.CutPrefix(strings.Trim(imp.Path.Value, `"`), module)
				if files, narrowed := imports[rest]; ours && narrowed && !slices.Contains(files, name) {
					t.Errorf("%s/%s imports %s, which only %v may", pkg, name, rest, files)
				}
			}
		}
	}
}
