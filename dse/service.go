package dse

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/publish"
	"dse.dev/dse/dse/subscribe"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// Row is one tuple of canonical scalars (see package table).
type Row = table.Row

// Data is what a subscriber receives for one publication: a snapshot (Rows,
// the whole table) or a delta (Add, Del). The rows are shared with the node
// and other subscribers: a hook may keep them but must not change them,
// nor reorder Rows, Add or Del (a hook that sorts works on a copy:
// slices.Clone), as client-go's informers share the objects of their
// cache.
type Data struct {
	Snapshot bool
	Rows     []Row
	Add      []Row
	Del      []Row
	// Published is the publisher's clock at the publish call (for latency
	// measurement; zero for snapshots made for catching up).
	Published time.Time
}

// RPCMethod handles one RPC action. args are JSON-like values (int64,
// float64, string, bool, nil, []any, map[string]any); so is the result.
type RPCMethod func(ctx context.Context, args map[string]any) (any, error)

// Endpoint is a set of named RPC actions, the counterpart of an
// oslo.messaging endpoint object.
type Endpoint map[string]RPCMethod

// Hooks are what a Congress DataService subclass overrides. Every field is
// optional.
type Hooks struct {
	// ReceiveData is called for every publication a subscription applies,
	// in seqnum order per table (receive_data), on the service's own
	// goroutine: a slow hook holds up no other subscriber. One that falls
	// Config.MaxHookQueue publications behind is cut off: it gets each
	// table it fell behind on next as a snapshot (Data.Snapshot) of the
	// service's cache, then the deltas after it. The cache may be ahead
	// of the publication a hook is handed.
	ReceiveData func(publisher, table string, data Data)
	// ReceiveDataSequenced is ReceiveData with the seqnum and the time the
	// publication arrived (receive_data_sequenced).
	ReceiveDataSequenced func(publisher, table string, data Data, seqnum uint64, receipt time.Time)
	// GetSnapshot overrides what GetSnapshot returns for a table
	// (get_snapshot).
	GetSnapshot func(table string) ([]Row, error)
	// OnFirstSubscriber and OnLastUnsubscriber are called when one of the
	// service's tables gains its first subscriber or loses its last one
	// (Congress's _published_tables_with_subscriber bookkeeping).
	OnFirstSubscriber  func(table string)
	OnLastUnsubscriber func(table string)
	// OwnershipChanged tells the instance where it stands, as Consul's and
	// tooz's leader elections do: once it has started (owner or standby),
	// then each time it becomes the owner or stops being one (standby,
	// stopped), or takes a new incarnation as owner (its node restarted).
	// Calls come in order, one at a time per service.
	OwnershipChanged func(Ownership)
}

// Ownership is a service instance's standing: the owner of its service (the
// one instance that publishes) or a standby.
type Ownership struct {
	Owner       bool   // this instance owns the service
	Node        string // the owner's node ("" while none is live)
	Incarnation uint64 // the owner's incarnation (its registry entry's index)
}

// Service kinds recorded in the registry.
const (
	KindGo       = "go"       // registered by a Go program
	KindExternal = "external" // created through the API; tables set by publish
	KindWatch    = "watch"    // an ephemeral subscriber behind `dse watch`
)

// DataService is a unit of data and business logic on the cluster: it may
// publish tables, subscribe to other services' tables, and expose RPC
// endpoints. It is the counterpart of Congress's DataService; create one with
// NewDataService and start it with Node.Register.
type DataService struct {
	id    string
	hooks Hooks
	kind  string
	cache *cache.Cache
	// exclusive: Register creates the service, or fails as existing
	// (`dse services create`), instead of adding an instance.
	exclusive bool

	mu        sync.Mutex
	node      *Node
	endpoints []Endpoint
	tables    map[string]*publish.Table
	subs      map[cache.TableID]bool
	withSubs  map[string]bool // published tables that have subscribers
	unsubSeen uint64          // fsm.Unsubscribed at the last dropEndedSubscriptions
	state     string
	inflight  sync.WaitGroup
	// hookq feeds the hooks, on their own goroutine, while the service
	// runs (nil without ReceiveData hooks).
	hookq atomic.Pointer[subscribe.HookQueue]

	ownMu    sync.Mutex // serializes OwnershipChanged; guards own
	ownKnown bool
	own      Ownership
}

// NewDataService returns an unstarted service with the given id and hooks.
func NewDataService(id string, hooks Hooks) *DataService {
	s := &DataService{
		id:        id,
		hooks:     hooks,
		kind:      KindGo,
		cache:     cache.New(),
		tables:    map[string]*publish.Table{},
		subs:      map[cache.TableID]bool{},
		withSubs:  map[string]bool{},
		unsubSeen: math.MaxUint64, // none seen: the first look scans
		state:     "created",
	}
	s.endpoints = []Endpoint{s.builtinEndpoint()}
	return s
}

// ID returns the service id.
func (s *DataService) ID() string { return s.id }

// Cache returns the local copy of every table the service subscribes to.
func (s *DataService) Cache() *cache.Cache { return s.cache }

// Status returns the service's lifecycle state: created, running, stopped.
func (s *DataService) Status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// AddRPCEndpoint exposes an endpoint's actions (add_rpc_endpoint). Actions
// of endpoints added later shadow earlier ones of the same name; call it
// before Register so the registry lists them.
func (s *DataService) AddRPCEndpoint(ep Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints = append(s.endpoints, ep)
}

// RPCEndpoints returns the service's endpoints, the built-in one first
// (rpc_endpoints).
func (s *DataService) RPCEndpoints() []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.endpoints)
}

func (s *DataService) actions() []string {
	var out []string
	for _, ep := range s.RPCEndpoints() {
		for name := range ep {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (s *DataService) method(action string) (RPCMethod, bool) {
	eps := s.RPCEndpoints()
	for i := len(eps) - 1; i >= 0; i-- {
		if m, ok := eps[i][action]; ok {
			return m, true
		}
	}
	return nil, false
}

// Register starts s on node n (DseNode.register_service, then start): it
// records an instance of the service in the registry. A service id
// registered on several nodes has one owner, the publisher; the others stand
// by and take over when the owner's node goes down.
func (n *Node) Register(ctx context.Context, s *DataService) error {
	if err := name.Check("service id", s.id); err != nil {
		return err
	}
	s.mu.Lock()
	if s.node != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: service %q already started", ErrInvalid, s.id)
	}
	s.node = n
	s.mu.Unlock()
	if err := n.cluster.EnsureRegistered(ctx); err != nil {
		s.mu.Lock()
		s.node = nil
		s.mu.Unlock()
		return err
	}
	if err := n.local.add(n.id, s); err != nil {
		s.mu.Lock()
		s.node = nil
		s.mu.Unlock()
		return err
	}
	err := n.applyErr(ctx, fsm.CmdServiceRegister, fsm.ServiceRegister{ID: s.id, Node: n.id, Kind: s.kind, Endpoints: s.actions(), Exclusive: s.exclusive})
	if err != nil {
		n.local.remove(s.id)
		s.mu.Lock()
		s.node = nil
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.state = "running"
	if s.hooks.ReceiveData != nil || s.hooks.ReceiveDataSequenced != nil {
		q := subscribe.NewHookQueue(s.runHooks, s.cache.Unsorted, n.cfg.MaxHookQueue, 0, n.metrics.cutoffs.Inc)
		s.hookq.Store(q)
		// The hooks' goroutine is work in flight (Wait): it ends once
		// Stop closed the queue and the hook running returned.
		s.inflight.Add(1)
		if !n.tryGo(func() { defer s.inflight.Done(); q.Run(n.ctx) }) {
			s.inflight.Done()
		}
	}
	s.mu.Unlock()
	s.cache.ShareWith(n.tables)
	n.resumeSubscriptions(s)
	s.syncOwnership()
	return nil
}

// Start is Register under the seed's name.
func (s *DataService) Start(ctx context.Context, n *Node) error { return n.Register(ctx, s) }

// Stop takes the service off its node: its instance leaves the registry (the
// service is deleted with its last instance) and no RPC reaches it any more.
// Stop is safe to call more than once.
func (s *DataService) Stop(ctx context.Context) error {
	n := s.nodeOf()
	if !s.stopLocal() {
		return nil
	}
	err := n.applyErr(ctx, fsm.CmdServiceUnregister, fsm.ServiceUnregister{ID: s.id, Node: n.id})
	if errors.Is(err, ErrServiceNotFound) {
		err = nil
	}
	return err
}

// stopLocal stops the service on its node without touching the registry;
// false if it was not running.
func (s *DataService) stopLocal() bool {
	s.mu.Lock()
	n := s.node
	if s.state != "running" {
		s.mu.Unlock()
		return false
	}
	s.state = "stopped"
	tables := slices.Collect(maps.Values(s.tables))
	if q := s.hookq.Swap(nil); q != nil {
		q.Close() // what it held goes undelivered, as after a Stop it always did
	}
	s.mu.Unlock()
	for _, t := range tables {
		t.Close() // no catch-up reaches a stopped service: free its history
	}
	n.local.remove(s.id)
	n.subs.DetachAll(s.id)
	s.cache.Unshare() // it keeps what it held; the others go on
	s.syncOwnership()
	return true
}

// Wait blocks until the work started before Stop (deliveries, RPCs, publishes
// in flight) has finished, or ctx ends.
func (s *DataService) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enter marks the start of work; false once stopped.
func (s *DataService) enter() (*Node, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != "running" {
		return nil, false
	}
	s.inflight.Add(1)
	return s.node, true
}

func (s *DataService) leave() { s.inflight.Done() }

func (s *DataService) errNotRunning() error {
	return fmt.Errorf("%w: service %q is %s", ErrUnavailable, s.id, s.Status())
}

// IsOwner reports whether this instance is running and owns its service
// now, in this node's registry copy.
func (s *DataService) IsOwner() bool {
	n := s.nodeOf()
	if n == nil || s.Status() != "running" {
		return false
	}
	owner, _, ok := n.fsm.Owner(s.id)
	return ok && owner == n.id
}

// syncOwnership calls the OwnershipChanged hook if the instance's standing
// changed since it last did (the node's registry watch, and the service's
// start and stop, call it). The registry is read under ownMu, so calls
// from several goroutines tell the changes in order.
func (s *DataService) syncOwnership() {
	n := s.nodeOf()
	if s.hooks.OwnershipChanged == nil || n == nil {
		return
	}
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	var now Ownership
	if s.Status() == "running" {
		node, inc, _ := n.fsm.Owner(s.id)
		now = Ownership{Owner: node == n.id, Node: node, Incarnation: inc}
	} else if !s.ownKnown {
		return // not started yet
	} else {
		now = Ownership{Node: s.own.Node, Incarnation: s.own.Incarnation} // stopped
	}
	changed := !s.ownKnown || now.Owner != s.own.Owner || now.Owner && now.Incarnation != s.own.Incarnation
	s.ownKnown, s.own = true, now
	if changed {
		s.hooks.OwnershipChanged(now)
	}
}

// IsValidService reports whether a service id is registered in the cluster
// (is_valid_service).
func (s *DataService) IsValidService(id string) bool {
	n := s.nodeOf()
	if n == nil {
		return false
	}
	_, ok := n.fsm.Service(id)
	return ok
}

func (s *DataService) nodeOf() *Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}

// Subscription is one subscriber's subscription to one publisher's table.
type Subscription struct {
	Subscriber string `json:"subscriber"`
	Publisher  string `json:"publisher"`
	Table      string `json:"table"`
}

func subscriptions(in []fsm.Subscription) []Subscription {
	out := make([]Subscription, len(in))
	for i, s := range in {
		out[i] = Subscription{Subscriber: s.Subscriber, Publisher: s.Publisher, Table: s.Table}
	}
	return out
}

// SubscriberList returns, cluster-wide, the subscriptions to this service's
// tables, sorted by table and subscriber (subscriber_list).
func (s *DataService) SubscriberList() []Subscription {
	n := s.nodeOf()
	if n == nil {
		return nil
	}
	return subscriptions(n.fsm.SubscriptionsTo(s.id))
}

// SubscriptionList returns, cluster-wide, this service's subscriptions:
// the (publisher, table) pairs it subscribes to, sorted
// (subscription_list).
func (s *DataService) SubscriptionList() []Subscription {
	n := s.nodeOf()
	if n == nil {
		return nil
	}
	return subscriptions(n.fsm.SubscriptionsOf(s.id))
}

// Info returns the service's DataServiceInfo as the registry knows it.
func (s *DataService) Info() (DataServiceInfo, error) {
	n := s.nodeOf()
	if n == nil {
		return DataServiceInfo{}, fmt.Errorf("%w: service %q is not started", ErrUnavailable, s.id)
	}
	return n.ServiceInfo(s.id)
}
