package demo

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Width is the most columns a line of the story takes: it fits a terminal
// of 100 columns (and the README's code blocks).
const Width = 100

// story writes what the demo tells: every line wrapped to Width, a
// continuation under the text it continues, indented two more.
type story struct{ w io.Writer }

// say writes format's lines, each wrapped to Width.
func (s story) say(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		for _, l := range wrap(line, Width) {
			fmt.Fprintln(s.w, l)
		}
	}
}

// wrap breaks line at spaces into lines of at most width columns (runes),
// breaking a word only when it alone is too long.
func wrap(line string, width int) []string {
	line = strings.TrimRight(line, " ")
	if utf8.RuneCountInString(line) <= width {
		return []string{line}
	}
	lead := len(line) - len(strings.TrimLeft(line, " "))
	indent := strings.Repeat(" ", min(lead+2, width/3))
	var out []string
	rest := line
	first := true
	for {
		prefix := ""
		if !first {
			prefix = indent
		}
		room := width - len(prefix)
		if utf8.RuneCountInString(rest) <= room {
			out = append(out, prefix+rest)
			return out
		}
		runes := []rune(rest)
		cut := -1
		for i := room; i > len(prefix)/2 && i > 0; i-- {
			if runes[i] == ' ' {
				cut = i
				break
			}
		}
		if cut <= 0 || strings.TrimSpace(string(runes[:cut])) == "" {
			cut = room // one word too long for a line
		}
		out = append(out, prefix+strings.TrimRight(string(runes[:cut]), " "))
		rest = strings.TrimLeft(string(runes[cut:]), " ")
		first = false
		if rest == "" {
			return out
		}
	}
}
