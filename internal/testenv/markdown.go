package testenv

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// FencedBlocks returns the fenced code blocks of language lang ("yaml")
// in the Markdown file path, in order: tests read the examples of the
// docs from the docs themselves, so that the two cannot drift apart.
func FencedBlocks(t testing.TB, path, lang string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []string
	var block strings.Builder
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && strings.TrimSpace(line) == "```"+lang:
			in = true
			block.Reset()
		case in && strings.TrimSpace(line) == "```":
			in = false
			found = append(found, block.String())
		case in:
			block.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return found
}
