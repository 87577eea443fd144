// Package name owns the rule every id in dse follows (node, service, table
// and datasource names), and the one message that states it: ids travel in
// URL paths, Raft entries and the CLI's arguments, so the rule is the same
// everywhere.
package name

import (
	"fmt"

	"dse.dev/dse/dse/errdefs"
)

// Rule says what a valid id is, as error messages state it.
const Rule = "1-128 letters, digits, '.', '_', '-' or ':', and not . or .."

// Valid reports whether s is a usable id: 1 to 128 of the characters of
// Rule, and neither "." nor ".." (URL paths clean them away, so the CLI
// could create but never reach them).
func Valid(s string) bool {
	if len(s) == 0 || len(s) > 128 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-', r == ':':
		default:
			return false
		}
	}
	return true
}

// Check returns nil for a valid id, else an errdefs.ErrInvalid naming what
// the id is for (e.g. "table name") and the rule.
func Check(what, s string) error {
	if Valid(s) {
		return nil
	}
	return fmt.Errorf("%w: %s %q must be %s", errdefs.ErrInvalid, what, s, Rule)
}
