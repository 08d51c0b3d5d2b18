package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestRouteGolden")

// jsonrtcd route explains decisions: each case's output is its golden
// file under testdata/route (go test -run TestRouteGolden -update
// rewrites them).
func TestRouteGolden(t *testing.T) {
	const cfg = "testdata/route/config.yaml"
	cases := []struct {
		name string
		args []string
	}{
		{"national", []string{"-config", cfg, "alice@example.com", "020-7946-0000", "-app", "web"}},
		{"national-with-header", []string{"-config", cfg, "-ext", "X-Account=42", "alice@example.com", "020-7946-0000", "-app", "web"}},
		{"national-message-builtin", []string{"-config", cfg, "-kind", "message", "-app", "web", "alice@example.com", "02079460000"}},
		{"extension", []string{"-config", cfg, "-app", "web", "alice@example.com", "2001"}},
		{"extension-uri-is-not", []string{"-config", cfg, "-app", "web", "alice@example.com", "sip:2001@example.com"}},
		{"guest-to-sales", []string{"-config", cfg, "-app", "support", "guest-1@guest.example.com", "sales@example.com"}},
		{"guest-elsewhere", []string{"-config", cfg, "-app", "support", "guest-1@guest.example.com", "+15551234"}},
		{"office-lan", []string{"-config", cfg, "-app", "web", "-source", "10.1.2.3", "alice@example.com", "bob@example.com"}},
		{"office-lan-live", []string{"-config", cfg, "-app", "web", "-source", "10.1.2.3", "-live", "alice@example.com", "bob@example.com"}},
		{"no-routing-section", []string{"alice@example.com", "bob@example.com"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := runRoute(c.args, &out); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "route", c.name+".golden")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != string(want) {
				t.Errorf("output:\n%s\nwant (%s):\n%s", out.String(), golden, want)
			}
		})
	}
}

func TestRouteErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"alice"}, "FROM and TO"},
		{[]string{"-config", "testdata/route/config.yaml", "a", "b"}, "-app"},
		{[]string{"-config", "testdata/route/config.yaml", "-app", "nope", "a", "b"}, `"nope"`},
		{[]string{"-kind", "fax", "a", "b"}, "-kind"},
		{[]string{"-source", "nowhere", "a", "b"}, "-source"},
		{[]string{"-ext", "novalue", "a", "b"}, "NAME=VALUE"},
		{[]string{"-config", "testdata/route/missing.yaml", "a", "b"}, "missing.yaml"},
	} {
		var out bytes.Buffer
		err := runRoute(c.args, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}
