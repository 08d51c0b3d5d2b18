package protocol

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The protocol document lives next to the code it describes; these tests
// keep the two from drifting apart.
const docPath = "../docs/protocol.md"

// docExample is one ```json block of the document and the test it names.
type docExample struct {
	line   int    // of the opening fence
	source string // the Source: line above it
	frame  []byte
}

var sourceLine = regexp.MustCompile("^Source: `([^`]+)`, (?:`([A-Za-z0-9_]+)`|test \"([^\"]+)\")")

func readDoc(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(data), "\n")
}

func docExamples(t *testing.T, lines []string) []docExample {
	t.Helper()
	var out []docExample
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```json" {
			continue
		}
		ex := docExample{line: i + 1}
		for j := i - 1; j >= 0; j-- {
			if s := strings.TrimSpace(lines[j]); s != "" {
				ex.source = s
				break
			}
		}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		ex.frame = []byte(strings.Join(body, "\n"))
		out = append(out, ex)
	}
	return out
}

// TestDocExamples checks that every JSON example of docs/protocol.md is a
// frame this package decodes and validates, encodes back to an equal
// frame, and names an existing test as its source.
func TestDocExamples(t *testing.T) {
	exs := docExamples(t, readDoc(t))
	if len(exs) < 30 {
		t.Fatalf("found %d examples; the document should have one per action at least", len(exs))
	}
	for _, ex := range exs {
		f, err := Decode(ex.frame)
		if err != nil {
			t.Errorf("line %d: %s: decode: %v", ex.line, ex.frame, err)
			continue
		}
		// Examples of declared actions (§2.8) are named x-...
		declared := func(_ Package, a Action) bool { return strings.HasPrefix(string(a), "x-") }
		if err := ValidateDeclared(f, declared); err != nil {
			t.Errorf("line %d: %s: validate: %v", ex.line, ex.frame, err)
		}
		again, err := Decode(f.Marshal())
		if err != nil {
			t.Errorf("line %d: re-encoding does not decode: %v", ex.line, err)
		} else if again.Control != f.Control || again.Header.Action != f.Header.Action || !bytes.Equal(compact(again.Payload), compact(f.Payload)) {
			t.Errorf("line %d: re-encoding changed the frame: %s", ex.line, f.Marshal())
		}
		checkSource(t, ex)
	}
}

// compact treats an absent payload and {} alike, as the encoder does.
func compact(p []byte) []byte {
	if len(p) == 0 {
		return []byte("{}")
	}
	return p
}

func checkSource(t *testing.T, ex docExample) {
	t.Helper()
	m := sourceLine.FindStringSubmatch(ex.source)
	if m == nil {
		t.Errorf("line %d: the example has no Source: line naming a test (found %q)", ex.line, ex.source)
		return
	}
	src, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(m[1])))
	if err != nil {
		t.Errorf("line %d: source %s: %v", ex.line, m[1], err)
		return
	}
	want := "func " + m[2] + "("
	if m[2] == "" {
		want = "test('" + m[3] + "'"
	}
	if !bytes.Contains(src, []byte(want)) {
		t.Errorf("line %d: %s has no %s", ex.line, m[1], want)
	}
}

var (
	heading = regexp.MustCompile(`^#{2,3} §(\d+)(?:\.(\d+))? `)
	anchor  = regexp.MustCompile(`^<a id="(s\d+(?:-\d+)?)"></a>$`)
)

// docSections returns the section numbers ("4", "4.2") of the document,
// checking that each numbered heading has its stable anchor right above.
func docSections(t *testing.T, lines []string) map[string]bool {
	t.Helper()
	secs := map[string]bool{}
	for i, l := range lines {
		m := heading.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		num, id := m[1], "s"+m[1]
		if m[2] != "" {
			num, id = m[1]+"."+m[2], id+"-"+m[2]
		}
		if secs[num] {
			t.Errorf("line %d: section §%s twice", i+1, num)
		}
		secs[num] = true
		if i == 0 || anchor.FindStringSubmatch(lines[i-1]) == nil || anchor.FindStringSubmatch(lines[i-1])[1] != id {
			t.Errorf("line %d: §%s needs <a id=%q></a> on the line above", i+1, num, id)
		}
	}
	return secs
}

var citation = regexp.MustCompile(`docs/protocol\.md\s*(?:\n\s*(?://|\*|#)?\s*)?§(\d+(?:\.\d+)?)`)

// TestDocCitations checks that every "docs/protocol.md §N" in the code and
// docs names a section that exists.
func TestDocCitations(t *testing.T) {
	secs := docSections(t, readDoc(t))
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "node_modules", ".git", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".js", ".ts", ".md":
		default:
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range citation.FindAllSubmatchIndex(data, -1) {
			if sec := string(data[m[2]:m[3]]); !secs[sec] {
				line := bytes.Count(data[:m[0]], []byte("\n")) + 1
				t.Errorf("%s:%d cites docs/protocol.md §%s, which does not exist", path, line, sec)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDocCodeTable checks that §9.2 lists every code of errors.go with
// its phrase.
func TestDocCodeTable(t *testing.T) {
	rows := map[string]string{}
	in := false
	sc := bufio.NewScanner(strings.NewReader(strings.Join(readDoc(t), "\n")))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "### §9.2 "):
			in = true
		case in && strings.HasPrefix(l, "#"):
			in = false
		case in && strings.HasPrefix(l, "| ") && len(l) > 6 && l[2] >= '1' && l[2] <= '6':
			cells := strings.Split(l, "|")
			rows[strings.TrimSpace(cells[1])] = strings.TrimSpace(cells[2])
		}
	}
	for code := 100; code < 700; code++ {
		phrase := Reason(code)
		if phrase == "" {
			continue
		}
		if got, ok := rows[itoa(code)]; !ok || got != phrase {
			t.Errorf("§9.2: code %d is listed as %q, want %q", code, got, phrase)
		}
		delete(rows, itoa(code))
	}
	for code := range rows {
		t.Errorf("§9.2 lists %s, which errors.go does not define", code)
	}
}
