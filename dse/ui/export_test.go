package ui

import "sort"

// Files lists the embedded files, for tests.
func Files() []string {
	h := Handler().(*handler)
	var out []string
	for name := range h.files {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// File returns an embedded file's content, for tests.
func File(name string) string {
	return string(Handler().(*handler).files[name].data)
}
