package api

import (
	"net/http/httptest"
	"strings"
	"testing"

	"dse.dev/dse/dse"
)

// FuzzReadJSON feeds arbitrary bodies to the strict JSON decoder every
// handler uses: it must return an error or a value, never panic.
func FuzzReadJSON(f *testing.F) {
	f.Add(`{"id":"n4","address":"127.0.0.1:1","http":"127.0.0.1:2","voter":true}`)
	f.Add(`{"args":{"a":[1,{"b":2.5}]},"timeout":"1s","retry":2}`)
	f.Add(`{"name":"x","driver":"file","config":{"path":"/x"}}`)
	f.Add(`{"id": 1} trailing`)
	f.Fuzz(func(t *testing.T, body string) {
		for _, v := range []any{new(dse.JoinRequest), new(RPCRequest), new(AddDatasourceRequest), new(UpdateDatasourceRequest), new(CreateTokenRequest)} {
			r := httptest.NewRequest("POST", "/", strings.NewReader(body))
			if err := readJSON(r, v); err == nil {
				if rr, ok := v.(*RPCRequest); ok {
					jsonToValues(rr.Args)
				}
			}
		}
	})
}
