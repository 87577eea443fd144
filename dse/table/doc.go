// Package table owns dse's data model: rows of canonical scalars, tables as
// sets of rows keyed by a compact canonical encoding, the delta between two
// contents, and Publication, the unit that travels from a publisher to its
// subscribers, with a reflection-free msgpack codec.
//
// Canonical values are int64, float64, string, bool, nil and []byte. Every
// entry point (Go callers, JSON, msgpack off the wire) maps other integer and
// float widths to int64 and float64, so a row read off the wire compares
// equal to the row published; anything else (maps, nested arrays) is refused
// with an error naming the row and column.
package table
