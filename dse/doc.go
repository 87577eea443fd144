// Package dse is the distributed services engine: a node of a dse cluster
// and the DataService API that runs on it.
//
// # Where things are
//
// A Node wires the parts below together; each part is a package that owns
// one thing and declares, as small interfaces, what it needs of the others:
//
//	cluster    the node's membership: Raft, its log store (raftlog), the
//	           registry (package fsm), commands to the leader, membership,
//	           liveness
//	publish    a publisher's tables and the group commit that numbers
//	           their publications
//	push       sequenced publications to the nodes of their subscribers
//	subscribe  the node's subscriptions: sequencing, delivery, catch-up
//	replica    external services' tables kept on several nodes, the
//	           in-sync set, acknowledgements to the owner
//	serve      sessions of processes serving RPC actions from outside Go
//	table      rows, sets, the publication codec;  seq  the sequencer;
//	           cache  a subscriber's copy of its tables
//	api        the HTTP API and its Go client;  ui  the web console;
//	           drivers  datasource drivers;  pki  the cluster's TLS
//	errdefs, wire, name   the errors, frame types and id rule all share
//	dsetest    in-process clusters for tests
//
// This package keeps what a service author uses (DataService, Hooks, RPC,
// Publish, Subscribe, Watch, datasources, tokens) and the glue: the services
// running here (local.go), inbound frames (dispatch.go), catch-ups on the
// wire (catchup.go), RPC routing (rpc.go), external services and their
// failover to replicas (external.go), attachments (attach.go) and
// datasources (datasources.go, dsplace.go, dsrun.go).
//
// # Node
//
// Every node reads the registry from its own FSM copy; writes go to the
// leader, forwarded over the cluster port by followers, and return once the
// local FSM has applied them, so a client reads its own writes on any node
// (package cluster).
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
// publication with the node's batcher (package publish). The batcher is a
// group commit: while one Raft entry is in flight, publications of every
// table of every local service queue up, and the next entry (fsm.Publish)
// assigns all their seqnums at once, fenced by the owner's incarnation.
// Once committed, they are pushed in seqnum order, each encoded once, to
// the nodes that host subscribers (package push), on bounded per-peer
// queues that drop rather than block. The publisher keeps a bounded
// history per table for subscribers that fall behind.
//
// # Subscribing
//
// A node keeps one subscription state per (publisher, table) for all its
// local subscribers (package subscribe): a sequencer that applies
// publications in order, buffers early ones and drops duplicates. Its
// local subscribers' caches share one copy of the table (cache.Shared:
// the first cache to get a publication applies it, the others take the
// change it made), its rows packed (table.Packed), and a new local
// subscriber starts from it. A gap, or the
// registry's seqnum ahead of the applied one, that lasts
// Config.ResubTimeout triggers a catch-up: the deltas after the last applied
// seqnum from the publisher's history, or a snapshot when the history is
// gone. Each DataService also gets an informer-style cache (package cache)
// whose callbacks see snapshots as diffs. The delivery loop applies to
// caches only; each service's hooks run on its own goroutine, behind a
// bounded queue, and one that falls behind is cut off and resumes from its
// cache as a snapshot (Config.MaxHookQueue).
//
// # Goroutines
//
// Every goroutine a node starts ends with the node's context, and Close
// waits for it:
//
//	node (goFunc):   the batcher (publish), the delivery and resubscribe
//	                 loops and each catch-up (subscribe), each running
//	                 DataService's hooks (subscribe.HookQueue), watchRegistry
//	                 (subscriber and ownership hooks, services that left
//	                 the registry, external services to own or take
//	                 over), attachLoop (sessions against the registry),
//	                 removeDeadWatches, placeLoop (datasources, while
//	                 leading), runLoop (the datasources placed here; each
//	                 driver's goroutine is waited for as it stops),
//	                 noteAuthOnceSynced, createBootstrapToken
//	replica:         the store's writer, the engine's loop (reconcile,
//	                 the owner's tracker), and short ones for each
//	                 catch-up pull and in-sync change
//	cluster:         the registry's group commit and its batches in flight,
//	                 livenessLoop (while leading), selfRegisterLoop, syncLoop
//	transport:       its accept loop, one per connection, one writer and
//	                 one reader per peer
//
// Close cancels the context, shuts Raft down (answering every future),
// waits for the node's goroutines (the replica engine's writer closes the
// replicas' store as it ends), then closes the cluster part (its
// goroutines, Raft's transport, the log store) and the transport, in that
// order. An RPC served on the caller's
// own node runs in a goroutine of its own, bounded by the call's deadline.
//
// # Lock order
//
// Where locks nest they are taken in this order, never the other way:
//
//	externalService.mu → Node.extMu
//	externalService.mu → publish.Table.mu → publish.Batcher.mu
//	replica.tracker.mu → replica.Engine.mu
//	subscribe.Engine.mu → subscribe.State.mu
//	cache.Cache.notifyMu → cache.Cache.mu → cache.Shared.mu → cache.sharedTable.mu
//
// The registry's lock (fsm.FSM.mu) is a leaf: the FSM answers reads with
// copies and never calls out. So are DataService.mu, localServices.mu, the
// delivery queue's lock, each hook queue's, serve.Sessions.mu and the cluster's and
// transport's own. Hooks,
// subscribers' deliveries and RPC methods run outside every lock.
package dse
