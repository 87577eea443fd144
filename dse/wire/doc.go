// Package wire owns the dse protocol's frame types on the cluster port and
// the msgpack encoding of their bodies: every body read from a peer has its
// declared lengths checked (internal/mpcheck) before it is decoded, so five
// hostile bytes cannot make the decoder allocate gigabytes.
//
// The bodies themselves are declared by the packages that send them
// (cluster: leader operations and status; dse: RPCs; subscribe: catch-ups;
// table: publication batches); wire only numbers the frames, so that no two
// packages give one number two meanings.
package wire
