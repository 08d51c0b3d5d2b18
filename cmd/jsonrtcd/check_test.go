package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// jsonrtcd -t compiles the templates' schemas and names a bad key.
func TestCheckTemplates(t *testing.T) {
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "jsonrtcd.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "listen: 127.0.0.1:0\ntemplates:\n  actions:\n    - {action: x-a, package: messaging, schema: {type: object}, webhook: {url: \"https://hook.example.com\", secret: 0123456789abcdef}}\n"
	if err := run([]string{"-t", "-config", write(good)}); err != nil {
		t.Fatalf("good: %v", err)
	}
	bad := strings.Replace(good, "{type: object}", "{type: 12}", 1)
	if err := run([]string{"-t", "-config", write(bad)}); err == nil || !strings.Contains(err.Error(), "templates.actions[0].schema") {
		t.Fatalf("bad schema: %v", err)
	}
}
