// Package mpcheck validates msgpack input before it is decoded: every
// declared length (string, binary, array, map, extension) must fit in the
// bytes that remain, and nesting is bounded. vmihailenco/msgpack allocates
// what a length declares, so five hostile bytes claiming 2^32 elements would
// otherwise exhaust memory; after Check, allocation is bounded by the input.
package mpcheck
