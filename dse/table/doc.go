// Package table owns dse's data model: rows of canonical scalars, tables as
// sets of rows keyed by a compact canonical encoding, the delta between two
// contents, and Publication, the unit that travels from a publisher to its
// subscribers, with a reflection-free msgpack codec.
//
// A table's rows are held two ways. A Set keeps them decoded, for a
// publisher's table, which its caller hands rows and which is read whole
// to encode snapshots. A Packed set keeps their canonical encodings in
// arenas, for a subscriber's cache, which is looked up and changed but
// rarely read whole: a 3-column row costs about 42 bytes there against
// 130 in a Set. A decoded snapshot carries its rows' encodings, hashes
// and offsets, so loading it into Packed sets encodes nothing again, and
// every cache on a node shares the one arena.
//
// Canonical values are int64, float64, string, bool, nil and []byte. Every
// entry point (Go callers, JSON, msgpack off the wire) maps other integer and
// float widths to int64 and float64, so a row read off the wire compares
// equal to the row published; anything else (maps, nested arrays) is refused
// with an error naming the row and column.
package table
