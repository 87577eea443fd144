// Package drivers holds the datasource drivers: Go code that turns an
// external source into tables. A driver declares its info (its config fields,
// which are required and which secret, and its tables), validates a config
// before the cluster accepts it, and runs where the leader places its
// datasource, publishing through a Sink.
//
// A source that fails (a missing file, bad JSON, an HTTP error, a timeout)
// leaves the last good tables in place: the driver reports the failure
// through the Sink's status and retries with backoff. It never publishes an
// empty table because a read failed.
package drivers
