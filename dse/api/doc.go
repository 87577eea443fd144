// Package api is the HTTP face of a dse node: a JSON API for operators, the
// CLI and non-Go clients, /metrics for Prometheus, and Client, the Go client
// the CLI uses.
//
// Every error is a JSON object {"error": {"code": C, "message": M}} with a
// status code that fits it (400 bad input, 404 unknown, 409 conflict, 503
// unavailable); C is the dse error code, so Client turns it back into an
// error that errors.Is matches against dse's sentinels. Request bodies are
// size-limited and decoded strictly: an unknown field is an error naming it.
// Writes may be sent to any node; the node forwards them to the leader.
package api
