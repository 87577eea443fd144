package dse_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/cache"
)

// The examples show a Congress author each method of the seed
// (congress.dse2.data_service) as dse spells it. They run on real nodes:
// one node for most, a three-node cluster where services sit on several
// nodes, started once for all the examples of the package.

var examples struct {
	once  sync.Once
	dir   string
	nodes []*dse.Node
}

// exampleCluster returns three nodes of one cluster on loopback, started
// on first use (TestMain closes them).
func exampleCluster() []*dse.Node {
	examples.once.Do(func() {
		dir, err := os.MkdirTemp("", "dse-examples-")
		if err != nil {
			panic(err)
		}
		examples.dir = dir
		ctx := context.Background()
		for i := range 3 {
			cfg := dse.DefaultConfig()
			cfg.ID, cfg.DataDir = fmt.Sprintf("n%d", i+1), filepath.Join(dir, fmt.Sprintf("n%d", i+1))
			cfg.Bind, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
			cfg.HeartbeatTimeout, cfg.ElectionTimeout = 200*time.Millisecond, 200*time.Millisecond
			cfg.LivenessGrace, cfg.ResubTimeout = 400*time.Millisecond, 300*time.Millisecond
			cfg.Bootstrap = i == 0
			n, err := dse.New(cfg, dse.Deps{})
			if err != nil {
				panic(err)
			}
			examples.nodes = append(examples.nodes, n)
			if i == 0 {
				if _, err := n.WaitLeader(ctx); err != nil {
					panic(err)
				}
				for !n.IsLeader() {
					time.Sleep(5 * time.Millisecond)
				}
				continue
			}
			if err := examples.nodes[0].Join(ctx, dse.JoinRequest{ID: n.ID(), Addr: n.Addr(), HTTPAddr: n.HTTPAddr(), Voter: true}); err != nil {
				panic(err)
			}
		}
		for _, n := range examples.nodes {
			for len(n.FSM().Nodes()) < 3 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	return examples.nodes
}

// closeExamples stops the example cluster, if it started.
func closeExamples() {
	for _, n := range examples.nodes {
		n.Close()
	}
	if examples.dir != "" {
		os.RemoveAll(examples.dir)
	}
}

// known waits until node's registry copy has service: a registry write
// returns once the writer's node applied it, and reaches the others a
// moment later.
func known(node *dse.Node, service string) {
	until(func() bool { _, ok := node.FSM().Service(service); return ok })
}

// until polls cond for up to 10 s.
func until(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// A service is created with its id and hooks (Congress's subclass
// overrides), then started on a node (start(), DseNode.register_service).
func ExampleNewDataService() {
	node := exampleCluster()[0]
	svc := dse.NewDataService("inventory", dse.Hooks{})
	fmt.Println(svc.ID(), svc.Status())
	if err := svc.Start(context.Background(), node); err != nil {
		panic(err)
	}
	fmt.Println(svc.ID(), svc.Status())
	svc.Stop(context.Background())
	// Output:
	// inventory created
	// inventory running
}

// start() registers the service on the cluster through its node; stop()
// takes it off, and wait() waits for the work it had started.
func ExampleDataService_Start() {
	ctx := context.Background()
	node := exampleCluster()[1]
	svc := dse.NewDataService("starter", dse.Hooks{})
	if err := svc.Start(ctx, node); err != nil {
		panic(err)
	}
	info, _ := svc.Info()
	fmt.Println("running on", info.NodeID, "valid:", svc.IsValidService("starter"))
	if err := svc.Stop(ctx); err != nil {
		panic(err)
	}
	if err := svc.Wait(ctx); err != nil {
		panic(err)
	}
	fmt.Println(svc.Status(), "valid:", svc.IsValidService("starter"))
	// Output:
	// running on n2 valid: true
	// stopped valid: false
}

// status is the service's lifecycle state.
func ExampleDataService_Status() {
	svc := dse.NewDataService("lifecycle", dse.Hooks{})
	fmt.Println(svc.Status())
	svc.Start(context.Background(), exampleCluster()[0])
	fmt.Println(svc.Status())
	svc.Stop(context.Background())
	fmt.Println(svc.Status())
	// Output:
	// created
	// running
	// stopped
}

// stop() is safe to call twice; after it no RPC reaches the service.
func ExampleDataService_Stop() {
	ctx := context.Background()
	nodes := exampleCluster()
	svc := dse.NewDataService("stopper", dse.Hooks{})
	svc.Start(ctx, nodes[0])
	fmt.Println(svc.Stop(ctx), svc.Stop(ctx))
	until(func() bool { _, ok := nodes[1].FSM().Service("stopper"); return !ok })
	_, err := nodes[1].RPC(ctx, "stopper", "ping", nil, dse.RPCOptions{Timeout: time.Second})
	// Said by nodes[1], or by the node it asked (which names itself).
	fmt.Println(errors.Is(err, dse.ErrServiceNotFound))
	// Output:
	// <nil> <nil>
	// true
}

// wait() blocks until the work started before stop() is done: here an RPC
// in flight.
func ExampleDataService_Wait() {
	ctx := context.Background()
	nodes := exampleCluster()
	svc := dse.NewDataService("slow", dse.Hooks{})
	started := make(chan struct{})
	svc.AddRPCEndpoint(dse.Endpoint{"work": func(context.Context, map[string]any) (any, error) {
		close(started)
		time.Sleep(100 * time.Millisecond)
		return "done", nil
	}})
	svc.Start(ctx, nodes[0])
	known(nodes[1], "slow")
	result := make(chan any, 1)
	go func() {
		res, _ := nodes[1].RPC(ctx, "slow", "work", nil, dse.RPCOptions{})
		result <- res
	}()
	<-started
	svc.Stop(ctx)
	svc.Wait(ctx) // the call in flight finishes
	fmt.Println(<-result)
	// Output:
	// done
}

// publish(table, data) sets a table's full new content; dse sends the
// delta (or the whole table with use_snapshot) under a new seqnum.
// get_last_published_data_with_seqnum returns the content and its seqnum.
func ExampleDataService_Publish() {
	ctx := context.Background()
	svc := dse.NewDataService("hosts-pub", dse.Hooks{})
	svc.Start(ctx, exampleCluster()[0])
	defer svc.Stop(ctx)
	seq, changed, _ := svc.Publish(ctx, "hosts", []dse.Row{{"web1", "up"}, {"db1", "up"}}, false)
	fmt.Println(seq, changed)
	seq, changed, _ = svc.Publish(ctx, "hosts", []dse.Row{{"web1", "up"}, {"db1", "up"}}, false)
	fmt.Println(seq, changed) // nothing changed: no seqnum used
	seq, changed, _ = svc.Publish(ctx, "hosts", []dse.Row{{"web1", "up"}, {"db1", "down"}}, false)
	fmt.Println(seq, changed)
	// Output:
	// 1 true
	// 1 false
	// 2 true
}

// get_last_published_data_with_seqnum returns a table's content with its
// seqnum, consistently; a table never published has seqnum 0.
func ExampleDataService_GetLastPublishedDataWithSeqnum() {
	ctx := context.Background()
	svc := dse.NewDataService("last-pub", dse.Hooks{})
	svc.Start(ctx, exampleCluster()[0])
	defer svc.Stop(ctx)
	seq, rows, _ := svc.GetLastPublishedDataWithSeqnum("hosts")
	fmt.Println(seq, len(rows))
	svc.Publish(ctx, "hosts", []dse.Row{{"web1", "up"}}, false)
	seq, rows, _ = svc.GetLastPublishedDataWithSeqnum("hosts")
	fmt.Println(seq, rows)
	// Output:
	// 0 0
	// 1 [[web1 up]]
}

// get_snapshot is the method services override: a subscriber of a table
// never published starts from what it returns, under seqnum 0, and the
// first publication continues from there.
func ExampleDataService_GetSnapshot() {
	ctx := context.Background()
	nodes := exampleCluster()
	engine := dse.NewDataService("engine", dse.Hooks{GetSnapshot: func(table string) ([]dse.Row, error) {
		return []dse.Row{{"policy", "default"}}, nil
	}})
	engine.Start(ctx, nodes[0])
	defer engine.Stop(ctx)
	rows, _ := engine.GetSnapshot("rules")
	fmt.Println("get_snapshot:", rows)

	sub := dse.NewDataService("engine-watcher", dse.Hooks{ReceiveDataSequenced: func(publisher, table string, d dse.Data, seq uint64, _ time.Time) {
		fmt.Println("received", table, "seqnum", seq, "snapshot", d.Snapshot, d.Rows)
	}})
	sub.Start(ctx, nodes[1])
	defer sub.Stop(ctx)
	sub.Subscribe(ctx, "engine", "rules")
	until(func() bool { return sub.Cache().Len(cache.TableID{Publisher: "engine", Table: "rules"}) == 1 })
	// Output:
	// get_snapshot: [[policy default]]
	// received rules seqnum 0 snapshot true [[policy default]]
}

// subscribe(service, table) delivers the table as a snapshot, then its
// deltas in order, to receive_data (Hooks.ReceiveData), wherever the
// publisher runs; unsubscribe(service, table) ends that table only.
func ExampleDataService_Subscribe() {
	ctx := context.Background()
	nodes := exampleCluster()
	pub := dse.NewDataService("nova", dse.Hooks{})
	pub.Start(ctx, nodes[0])
	defer pub.Stop(ctx)
	pub.Publish(ctx, "servers", []dse.Row{{"vm1", "ACTIVE"}}, false)

	got := make(chan string, 4)
	policy := dse.NewDataService("policy", dse.Hooks{ReceiveData: func(publisher, table string, d dse.Data) {
		if d.Snapshot {
			got <- fmt.Sprintf("%s/%s snapshot %v", publisher, table, d.Rows)
		} else {
			got <- fmt.Sprintf("%s/%s delta +%v -%v", publisher, table, d.Add, d.Del)
		}
	}})
	policy.Start(ctx, nodes[2])
	defer policy.Stop(ctx)
	policy.Subscribe(ctx, "nova", "servers")
	fmt.Println(<-got)
	pub.Publish(ctx, "servers", []dse.Row{{"vm1", "SHUTOFF"}}, false)
	fmt.Println(<-got)
	fmt.Println(policy.SubscriptionList())
	policy.Unsubscribe(ctx, "nova", "servers")
	fmt.Println(len(policy.SubscriptionList()))
	// Output:
	// nova/servers snapshot [[vm1 ACTIVE]]
	// nova/servers delta +[[vm1 SHUTOFF]] -[[vm1 ACTIVE]]
	// [{policy nova servers}]
	// 0
}

// receive_data_sequenced (Hooks.ReceiveDataSequenced) is receive_data with
// the seqnum and the time the publication arrived.
func ExampleHooks_receiveDataSequenced() {
	ctx := context.Background()
	nodes := exampleCluster()
	pub := dse.NewDataService("keystone", dse.Hooks{})
	pub.Start(ctx, nodes[0])
	defer pub.Stop(ctx)
	pub.Publish(ctx, "users", []dse.Row{{"alice"}}, false)
	seqs := make(chan uint64, 4)
	sub := dse.NewDataService("auditor", dse.Hooks{ReceiveDataSequenced: func(_, _ string, d dse.Data, seq uint64, receipt time.Time) {
		seqs <- seq
	}})
	sub.Start(ctx, nodes[1])
	defer sub.Stop(ctx)
	sub.Subscribe(ctx, "keystone", "users")
	fmt.Println(<-seqs) // the table as a snapshot
	pub.Publish(ctx, "users", []dse.Row{{"alice"}, {"bob"}}, false)
	fmt.Println(<-seqs)
	// Output:
	// 1
	// 2
}

// subscriber_list lists who subscribes to the service's tables,
// cluster-wide; info's subscribed_tables are those tables (Congress's
// _published_tables_with_subscriber).
func ExampleDataService_SubscriberList() {
	ctx := context.Background()
	nodes := exampleCluster()
	pub := dse.NewDataService("neutron", dse.Hooks{})
	pub.Start(ctx, nodes[0])
	defer pub.Stop(ctx)
	for i, id := range []string{"firewall", "monitor"} {
		s := dse.NewDataService(id, dse.Hooks{})
		s.Start(ctx, nodes[i+1])
		defer s.Stop(ctx)
		s.Subscribe(ctx, "neutron", "ports")
	}
	until(func() bool { return len(pub.SubscriberList()) == 2 }) // the registry reaches n1
	fmt.Println(pub.SubscriberList())
	info, _ := pub.Info()
	fmt.Println(info.SubscribedTables)
	// Output:
	// [{firewall neutron ports} {monitor neutron ports}]
	// [ports]
}

// subscription_list lists the (publisher, table) pairs the service
// subscribes to.
func ExampleDataService_SubscriptionList() {
	ctx := context.Background()
	s := dse.NewDataService("reporter", dse.Hooks{})
	s.Start(ctx, exampleCluster()[0])
	defer s.Stop(ctx)
	s.Subscribe(ctx, "cinder", "volumes")
	s.Subscribe(ctx, "glance", "images")
	for _, sub := range s.SubscriptionList() {
		fmt.Println(sub.Publisher, sub.Table)
	}
	// Output:
	// cinder volumes
	// glance images
}

// check_resub_all checks the service's subscriptions for a gap or a lag
// that outlasted the resubscribe timeout and catches them up; the node
// also does so continuously.
func ExampleDataService_CheckResubAll() {
	ctx := context.Background()
	nodes := exampleCluster()
	pub := dse.NewDataService("heat", dse.Hooks{})
	pub.Start(ctx, nodes[0])
	defer pub.Stop(ctx)
	pub.Publish(ctx, "stacks", []dse.Row{{"s1"}}, false)
	sub := dse.NewDataService("orchestrator", dse.Hooks{})
	sub.Start(ctx, nodes[1])
	defer sub.Stop(ctx)
	sub.Subscribe(ctx, "heat", "stacks")
	sub.CheckResubAll()
	id := cache.TableID{Publisher: "heat", Table: "stacks"}
	fmt.Println(until(func() bool { return sub.Cache().Len(id) == 1 }))
	// Output:
	// true
}

// add_rpc_endpoint exposes an endpoint's actions; rpc(service, action,
// kwargs, timeout, local, retry) calls them wherever the service runs.
// Errors are distinct: no such method, unavailable, the remote error.
func ExampleDataService_RPC() {
	ctx := context.Background()
	nodes := exampleCluster()
	calc := dse.NewDataService("calc", dse.Hooks{})
	calc.AddRPCEndpoint(dse.Endpoint{
		"add": func(_ context.Context, args map[string]any) (any, error) {
			return args["a"].(int64) + args["b"].(int64), nil
		},
		"fail": func(context.Context, map[string]any) (any, error) { return nil, fmt.Errorf("no luck") },
	})
	calc.Start(ctx, nodes[0])
	defer calc.Stop(ctx)
	caller := dse.NewDataService("caller", dse.Hooks{})
	caller.Start(ctx, nodes[2])
	defer caller.Stop(ctx)
	until(func() bool { return caller.IsValidService("calc") }) // the registry reaches n3
	sum, err := caller.RPC(ctx, "calc", "add", map[string]any{"a": 1, "b": 2}, dse.RPCOptions{Timeout: 5 * time.Second, Retry: 1})
	fmt.Println(sum, err)
	_, err = caller.RPC(ctx, "calc", "mul", nil, dse.RPCOptions{})
	fmt.Println(err)
	_, err = caller.RPC(ctx, "calc", "fail", nil, dse.RPCOptions{})
	fmt.Println(err)
	// Output:
	// 3 <nil>
	// no such method: "mul" on service "calc"
	// no luck
}

// rpc_endpoints returns the service's endpoints, the built-in one first:
// DataServiceEndPoints' ping, get_snapshot and
// get_last_published_data_with_seqnum are on every service.
func ExampleDataService_RPCEndpoints() {
	ctx := context.Background()
	nodes := exampleCluster()
	svc := dse.NewDataService("endpoints", dse.Hooks{})
	svc.AddRPCEndpoint(dse.Endpoint{"hello": func(context.Context, map[string]any) (any, error) { return "hi", nil }})
	svc.Start(ctx, nodes[0])
	defer svc.Stop(ctx)
	svc.Publish(ctx, "t", []dse.Row{{int64(1)}}, false)
	known(nodes[1], "endpoints")
	var actions []string
	for _, ep := range svc.RPCEndpoints() {
		for name := range ep {
			actions = append(actions, name)
		}
	}
	sort.Strings(actions)
	fmt.Println(actions)
	echo, _ := nodes[1].RPC(ctx, "endpoints", "ping", map[string]any{"a": 1}, dse.RPCOptions{})
	fmt.Println(echo)
	last, _ := nodes[1].RPC(ctx, "endpoints", "get_last_published_data_with_seqnum", map[string]any{"table": "t"}, dse.RPCOptions{})
	fmt.Println(last)
	snap, _ := nodes[1].RPC(ctx, "endpoints", "get_snapshot", map[string]any{"table": "t"}, dse.RPCOptions{})
	fmt.Println(snap)
	// Output:
	// [get_last_published_data_with_seqnum get_snapshot hello ping]
	// map[a:1]
	// map[rows:[[1]] seqnum:1]
	// [[1]]
}

// add_rpc_endpoint: endpoints added later shadow actions of earlier ones.
func ExampleDataService_AddRPCEndpoint() {
	ctx := context.Background()
	nodes := exampleCluster()
	svc := dse.NewDataService("shadow", dse.Hooks{})
	svc.AddRPCEndpoint(dse.Endpoint{"ping": func(context.Context, map[string]any) (any, error) { return "pong", nil }})
	svc.Start(ctx, nodes[0])
	defer svc.Stop(ctx)
	known(nodes[2], "shadow")
	res, _ := nodes[2].RPC(ctx, "shadow", "ping", map[string]any{"a": 1}, dse.RPCOptions{})
	fmt.Println(res)
	// Output:
	// pong
}

// is_valid_service says whether a service id is registered, cluster-wide.
func ExampleDataService_IsValidService() {
	ctx := context.Background()
	nodes := exampleCluster()
	a := dse.NewDataService("valid-a", dse.Hooks{})
	a.Start(ctx, nodes[0])
	defer a.Stop(ctx)
	b := dse.NewDataService("valid-b", dse.Hooks{})
	b.Start(ctx, nodes[1])
	defer b.Stop(ctx)
	known(nodes[1], "valid-a")
	fmt.Println(b.IsValidService("valid-a"), b.IsValidService("nope"))
	// Output:
	// true false
}

// info is the service's DataServiceInfo as the registry knows it.
func ExampleDataService_Info() {
	ctx := context.Background()
	svc := dse.NewDataService("described", dse.Hooks{})
	svc.Start(ctx, exampleCluster()[2])
	defer svc.Stop(ctx)
	svc.Publish(ctx, "alarms", []dse.Row{{"a1"}}, false)
	info, _ := svc.Info()
	fmt.Println(info.ServiceID, info.NodeID, info.PublishedTables, info.SubscribedTables, info.RPCEndpointsInfo)
	// Output:
	// described n3 [alarms] [] [get_last_published_data_with_seqnum get_snapshot ping]
}

// DataServiceInfo's to_dict/from_dict and to_json/from_json keep exactly
// Congress's five keys.
func ExampleDataServiceInfo_ToJSON() {
	info := dse.DataServiceInfo{ServiceID: "nova", NodeID: "n1", PublishedTables: []string{"servers"}}
	js, _ := info.ToJSON()
	fmt.Println(string(js))
	back, _ := dse.InfoFromJSON(js)
	fmt.Println(back.ServiceID, back.PublishedTables)
	d := info.ToDict()
	fmt.Println(len(d), d["node_id"])
	fromDict, _ := dse.InfoFromDict(d)
	fmt.Println(fromDict.NodeID)
	_, err := dse.InfoFromJSON([]byte(`{"service_id":"x"}`))
	fmt.Println(err)
	// Output:
	// {"service_id":"nova","node_id":"n1","published_tables":["servers"],"subscribed_tables":[],"rpc_endpoints_info":[]}
	// nova [servers]
	// 5 n1
	// n1
	// invalid argument: DataServiceInfo: missing keys node_id, published_tables, rpc_endpoints_info, subscribed_tables
}

// A service id registered on several nodes has one owner, which publishes,
// and standbys. OwnershipChanged tells each instance where it stands; here
// the standby takes over when the owner stops, under a new incarnation.
func ExampleHooks_ownershipChanged() {
	ctx := context.Background()
	nodes := exampleCluster()
	changes := make(chan string, 8)
	instance := func(i int) *dse.DataService {
		node := nodes[i].ID()
		s := dse.NewDataService("scheduler", dse.Hooks{OwnershipChanged: func(o dse.Ownership) {
			state := "standby"
			if o.Owner {
				state = "owner"
			}
			changes <- node + " " + state
		}})
		if err := s.Start(ctx, nodes[i]); err != nil {
			panic(err)
		}
		return s
	}
	first := instance(0)
	fmt.Println(<-changes)
	second := instance(1)
	defer second.Stop(ctx)
	fmt.Println(<-changes)
	fmt.Println("owner:", first.IsOwner(), "standby owns:", second.IsOwner())
	first.Stop(ctx) // its node's process ends, as it were
	got := []string{<-changes, <-changes}
	sort.Strings(got)
	fmt.Println(got)
	_, _, err := second.Publish(ctx, "jobs", []dse.Row{{"j1"}}, false)
	fmt.Println("the new owner publishes:", err == nil, second.IsOwner())
	// Output:
	// n1 owner
	// n2 standby
	// owner: true standby owns: false
	// [n1 standby n2 owner]
	// the new owner publishes: true true
}

// Datasources: the datasource methods of the seed
// (get_datasource(s), get_driver_info, get_driver_schema,
// get_drivers_info, make_datasource_dict); secrets read as "<hidden>"
// when filtered.
func ExampleDataService_GetDatasources() {
	ctx := context.Background()
	nodes := exampleCluster()
	svc := dse.NewDataService("dsman", dse.Hooks{})
	svc.Start(ctx, nodes[0])
	defer svc.Stop(ctx)
	ds, err := nodes[0].AddDatasource(ctx, dse.DatasourceSpec{Name: "inventory-api", Driver: "http", Config: map[string]any{
		"url": "http://127.0.0.1:1/items", "username": "bob", "password": "s3cret",
	}})
	if err != nil {
		panic(err)
	}
	defer nodes[0].DeleteDatasource(ctx, ds.ID)
	list, _ := svc.GetDatasources(true)
	fmt.Println(len(list), list[0].Name, list[0].Config["password"])
	shown, _ := svc.GetDatasource("inventory-api", false)
	fmt.Println(shown.Config["password"])
	hidden, _ := svc.GetDatasource(ds.ID, true)
	fmt.Println(hidden.Config["password"])
	// Output:
	// 1 inventory-api <hidden>
	// s3cret
	// <hidden>
}

// get_drivers_info, get_driver_info and get_driver_schema describe the
// drivers datasources run on.
func ExampleDataService_GetDriverInfo() {
	svc := dse.NewDataService("drivers", dse.Hooks{})
	for _, d := range svc.GetDriversInfo() {
		fmt.Println(d.ID)
	}
	info, _ := svc.GetDriverInfo("http")
	fmt.Println(info.Secret("password"), info.Secret("url"))
	schema, _ := svc.GetDriverSchema("http")
	fmt.Println(len(schema))
	_, err := svc.GetDriverInfo("nope")
	fmt.Println(err)
	// Output:
	// file
	// http
	// true false
	// 1
	// not found: driver "nope"
}

// make_datasource_dict is the API's dict of a datasource, its secrets
// hidden when filtered.
func ExampleMakeDatasourceDict() {
	ctx := context.Background()
	node := exampleCluster()[0]
	ds, err := node.AddDatasource(ctx, dse.DatasourceSpec{Name: "dict-api", Driver: "http", Config: map[string]any{"url": "http://127.0.0.1:1/x", "username": "u", "password": "pw"}})
	if err != nil {
		panic(err)
	}
	defer node.DeleteDatasource(ctx, ds.ID)
	stored, _ := node.FSM().Datasource(ds.ID)
	fmt.Println(dse.MakeDatasourceDict(stored, true).Config["password"], dse.MakeDatasourceDict(stored, false).Config["password"])
	// Output:
	// <hidden> pw
}

func TestMain(m *testing.M) {
	code := m.Run()
	closeExamples()
	os.Exit(code)
}
