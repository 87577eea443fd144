// Package cache is the subscriber's ready-made local copy of the tables it
// subscribes to, like client-go's informer cache: concurrency-safe reads of
// each table, and change callbacks that receive rows added and deleted. A
// snapshot that replaces a table reaches the callbacks as a diff against the
// rows held before, so a callback never has to tell snapshots from deltas.
package cache
