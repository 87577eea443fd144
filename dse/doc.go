// Package dse is the distributed services engine: a node of a dse cluster
// and the DataService API that runs on it.
//
// # Node
//
// A Node owns one cluster port (package transport) on which it runs
// hashicorp/raft, with hashicorp/raft-wal (default: one fsync per append) or
// raft-boltdb (two per commit) as log and stable store and a file snapshot
// store under its data dir, and the replicated registry (package fsm). Every
// node reads the registry from its own FSM copy; writes go to the leader,
// forwarded over the cluster port by followers (leaderDo), and return once
// the local FSM has applied them, so a client reads its own writes on any
// node.
//
// Membership: Join (any member forwards to the leader; a member with the same
// id or address is replaced, as rqlite does), Remove (refused when the live
// voters left could not elect, unless forced), Leave, Promote and
// TransferLeadership. Liveness: the leader turns Raft's own heartbeat
// observations into registry entries (down after Config.LivenessGrace, up
// again when heard from), so every node shows the same reachability and a
// service owned by a dead node fails over to a standby instance.
//
// # DataService
//
// The seed (congress.dse2.data_service) maps onto Go like this:
//
//	DataService(service_id)                 NewDataService(id, Hooks)
//	service_id                              DataService.ID
//	start() / DseNode.register_service      Node.Register, DataService.Start
//	stop(), wait()                          DataService.Stop, DataService.Wait
//	publish(table, data, use_snapshot)      DataService.Publish
//	(delta publish, new)                    DataService.PublishDelta
//	(many deltas in flight, new)            DataService.PublishDeltaAsync, Publishing.Wait
//	subscribe / unsubscribe                 DataService.Subscribe, Unsubscribe
//	receive_data                            Hooks.ReceiveData
//	receive_data_sequenced                  Hooks.ReceiveDataSequenced
//	get_snapshot (overridable)              DataService.GetSnapshot, Hooks.GetSnapshot
//	get_last_published_data_with_seqnum     DataService.GetLastPublishedDataWithSeqnum
//	check_resub_all                         DataService.CheckResubAll (the node also runs it continuously)
//	rpc(service, action, kwargs, timeout,   DataService.RPC(ctx, service, action, args,
//	    local, retry)                           RPCOptions{Timeout, Local, Retry})
//	add_rpc_endpoint / rpc_endpoints        DataService.AddRPCEndpoint, RPCEndpoints
//	(endpoints served from outside Go, new) Node.Attach, ServeSession (attach.go)
//	is_valid_service                        DataService.IsValidService
//	subscriber_list / subscription_list     DataService.SubscriberList, SubscriptionList (cluster-wide)
//	info / status                           DataService.Info, DataService.Status
//	_published_tables_with_subscriber       Hooks.OnFirstSubscriber, Hooks.OnLastUnsubscriber
//	DataServiceEndPoints: ping,             built-in actions "ping", "get_snapshot",
//	    get_snapshot, get_last_published...     "get_last_published_data_with_seqnum"
//	DataServiceInfo, to_dict/from_dict,     DataServiceInfo, ToDict/InfoFromDict,
//	    to_json/from_json                       ToJSON/InfoFromJSON
//
// # The publish path
//
// Publish computes the delta against the table's content (which already
// includes publications waiting for seqnums), applies it, and queues the
// publication with the node's batcher. The batcher is a group commit: while
// one Raft entry is in flight, publications of every table of every local
// service queue up, and the next entry (fsm.Publish) assigns all their
// seqnums at once, fenced by the owner's incarnation. Once committed, the
// batcher pushes them in seqnum order, each encoded once, to the nodes that
// host subscribers (from the registry), on bounded per-peer queues that drop
// rather than block. The publisher keeps a bounded history per table for
// subscribers that fall behind.
//
// # Subscribing
//
// A node keeps one subscription state per (publisher, table) for all its
// local subscribers: a sequencer (package seq) that applies publications in
// order, buffers early ones and drops duplicates. It keeps no copy of the
// table of its own: each local subscriber's cache holds it, and a new local
// subscriber starts from one of theirs.
// A gap, or the registry's seqnum ahead of the applied one, that lasts
// Config.ResubTimeout triggers a catch-up: the deltas after the last applied
// seqnum from the publisher's history, or a snapshot when the history is
// gone. Each DataService also gets an informer-style cache (package cache)
// whose callbacks see snapshots as diffs.
//
// Sub-packages: api (the HTTP API and the Go client the CLI uses), table
// (rows, sets, the publication codec), seq (the sequencer), cache (the
// subscriber's table cache), dsetest (in-process clusters for tests).
package dse
