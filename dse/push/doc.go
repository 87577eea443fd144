// Package push owns the publisher side of delivery: a sequenced
// publication goes once to each node that hosts at least one subscriber of
// its table (known from the registry), never through Raft, and that node
// fans it out to its local subscribers. Congress broadcast every
// publication to every node; dse sends only where it is wanted.
//
// Pushes are one-way frames on bounded per-peer queues that drop rather
// than block (package transport), so a slow subscriber node never holds up
// its publisher: what it misses it recovers by catching up (package
// subscribe). Each publication is encoded once into one buffer, whatever the
// number of nodes, and nodes that get the same publications share frames.
package push
