package gateway

import (
	"path/filepath"
	"testing"

	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/templates"
)

// The templates example of docs/routing.md (its one yml block: the
// yaml blocks are the routing examples TestDocsRoutingExamples counts)
// loads, and declares what the text says.
func TestDocsTemplatesExample(t *testing.T) {
	blocks := testenv.FencedBlocks(t, filepath.Join("..", "docs", "routing.md"), "yml")
	if len(blocks) != 1 {
		t.Fatalf("docs/routing.md has %d yml blocks, want 1 (templates)", len(blocks))
	}
	cfg, err := LoadConfig(writeConfig(t, blocks[0]))
	if err != nil {
		t.Fatal(err)
	}
	s, err := templates.New(cfg.Templates)
	if err != nil {
		t.Fatal(err)
	}
	if a := s.ForInfo("x-score"); a == nil || a.Name != "x-score" || a.Package != protocol.PackageCall {
		t.Errorf("x-score: %+v", a)
	}
	if a := s.Lookup(protocol.PackageMessaging, "x-page"); a == nil || a.SIP == nil || a.SIP.Method != "MESSAGE" {
		t.Errorf("x-page: %+v", a)
	}
	if a := s.Lookup(protocol.PackageMessaging, "x-lookup"); a == nil || !a.IsWebhook() {
		t.Errorf("x-lookup: %+v", a)
	}
}
