// Package dsetest starts real dse clusters inside a test: real loopback TCP
// on port 0, real Raft storage in t.TempDir(), fast timeouts.
package dsetest
