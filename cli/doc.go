// Package cli is the dse command line (github.com/urfave/cli/v2): the agent
// that runs a node, the dev cluster, and the client commands that drive a
// cluster through a node's HTTP API (package dse/api). Command names, flags,
// --json shapes and exit codes follow CLI.md: 0 success, 1 the operation
// failed (one line on stderr naming the cause), 2 bad usage.
package cli
