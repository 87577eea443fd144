package api

import "testing"

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc":     "abc",
		"bearer abc":     "abc", // the scheme is case-insensitive
		"BEARER  abc ":   "abc",
		"abc":            "abc", // a bare token
		"":               "",
		"Bearer":         "Bearer",
		"Basic dXNlcjpw": "Basic dXNlcjpw", // not a token: refused by Authenticate
	} {
		if got := bearer(h); got != want {
			t.Errorf("bearer(%q) = %q, want %q", h, got, want)
		}
	}
}
