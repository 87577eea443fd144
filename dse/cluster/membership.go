package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/wire"
	"dse.dev/dse/fsm"
	"dse.dev/dse/transport"
)

// JoinRequest asks the cluster to add a node.
type JoinRequest struct {
	ID       string `msgpack:"id" json:"id"`
	Addr     string `msgpack:"addr" json:"address"`
	HTTPAddr string `msgpack:"http" json:"http"`
	Voter    bool   `msgpack:"voter" json:"voter"`
}

// Member is one cluster member as `members list` shows it.
type Member struct {
	ID        string `json:"id"`
	Address   string `json:"address"`
	HTTP      string `json:"http"`
	Voter     bool   `json:"voter"`
	Leader    bool   `json:"leader"`
	State     string `json:"state"`
	Reachable bool   `json:"reachable"`
	LastIndex uint64 `json:"last_index"`
}

// StatusReport is a node's own view of Raft, as `status` shows it.
type StatusReport struct {
	ID           string `msgpack:"id" json:"id"`
	State        string `msgpack:"state" json:"state"`
	Leader       string `msgpack:"leader" json:"leader"`
	Term         uint64 `msgpack:"term" json:"term"`
	CommitIndex  uint64 `msgpack:"commit_index" json:"commit_index"`
	AppliedIndex uint64 `msgpack:"applied_index" json:"applied_index"`
	LastIndex    uint64 `msgpack:"last_index" json:"-"`
	Members      int    `msgpack:"members" json:"members"`
	LogStore     string `msgpack:"log_store" json:"log_store"`
}

// Status returns this node's view of Raft.
func (c *Membership) Status() StatusReport {
	leader, _ := c.Leader()
	stats := c.raft.Stats()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	servers, _, _ := c.Configuration()
	return StatusReport{
		ID:           c.id,
		State:        stateName(c.raft.State()),
		Leader:       leader,
		Term:         term,
		CommitIndex:  c.raft.CommitIndex(),
		AppliedIndex: c.raft.AppliedIndex(),
		LastIndex:    c.raft.LastIndex(),
		Members:      len(servers),
		LogStore:     c.logKind,
	}
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Shutdown:
		return "shutdown"
	}
	return s.String()
}

// PeerStatus asks a member for its status over the cluster port.
func (c *Membership) PeerStatus(ctx context.Context, addr string) (StatusReport, error) {
	var st StatusReport
	raw, err := c.trans.Call(ctx, addr, wire.Status, nil)
	if err != nil {
		return st, err
	}
	return st, wire.Decode(raw, &st, "status")
}

// Members lists the cluster's members: Raft's configuration joined with the
// registry's addresses and liveness, and each member's own report of its
// state and last log index (asked in parallel, briefly; a member that does not
// answer shows state "down").
func (c *Membership) Members(ctx context.Context) ([]Member, error) {
	servers, _, err := c.Configuration()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errdefs.ErrUnavailable, err)
	}
	leader, _ := c.Leader()
	out := make([]Member, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		mb := Member{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: string(s.ID) == leader}
		node, known := c.fsm.Node(mb.ID)
		mb.HTTP, mb.Reachable = node.HTTPAddr, node.Up
		out[i] = mb
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st StatusReport
			var err error
			if mb.ID == c.id {
				st = c.Status()
			} else {
				cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				st, err = c.PeerStatus(cctx, mb.Address)
				cancel()
			}
			if err != nil {
				// Unreachable now, whatever the registry's liveness (which
				// lags by the grace, and stands still without a leader).
				out[i].State, out[i].Reachable = "down", false
				return
			}
			out[i].State, out[i].LastIndex = st.State, st.LastIndex
			if !known {
				out[i].Reachable = true
			}
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Join adds a node to the cluster (through the leader). A member with the
// same id or address is replaced; a member already present as asked is left
// alone.
func (c *Membership) Join(ctx context.Context, req JoinRequest) error {
	if !name.Valid(req.ID) {
		return fmt.Errorf("%w: node id %q", errdefs.ErrInvalid, req.ID)
	}
	if req.Addr == "" {
		return fmt.Errorf("%w: node address is required", errdefs.ErrInvalid)
	}
	_, err := c.leaderDo(ctx, leaderOp{Op: "join", Member: req})
	return err
}

func (c *Membership) joinLocal(req JoinRequest) (uint64, error) {
	servers, _, err := c.Configuration()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errdefs.ErrUnavailable, err)
	}
	timeout := c.cfg.ApplyTimeout
	for _, s := range servers {
		if string(s.ID) == req.ID && string(s.Address) == req.Addr {
			// A member asking again (an agent back on its data dir, with
			// --join) keeps its place, as a voter if it was promoted since
			// it first joined as a non-voter: `members promote` changes
			// suffrage, a join never does.
			c.logger.Info("join of an existing member", "id", req.ID)
			return c.upsertNodeLocal(req)
		}
	}
	// The new member must answer on its cluster port first, before any
	// entry it replaces goes: this checks its address and, on a TLS
	// cluster, that its certificate is the cluster CA's (a node that cannot
	// pass mutual TLS never becomes a member); a refused join changes
	// nothing.
	var st StatusReport
	for attempt := range 3 {
		// A pooled connection to a former member at the same address
		// fails once; try again on a fresh one.
		ctx, cancel := context.WithTimeout(c.ctx, 3*time.Second)
		st, err = c.PeerStatus(ctx, req.Addr)
		cancel()
		if err == nil || attempt == 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return 0, fmt.Errorf("%w: node %q at %s has no certificate from the cluster CA: %v", errdefs.ErrForbidden, req.ID, req.Addr, err)
	}
	if errors.Is(err, transport.ErrClusterKey) {
		return 0, fmt.Errorf("%w: node %q at %s does not hold the cluster key (--cluster-key): %v", errdefs.ErrForbidden, req.ID, req.Addr, err)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: node %q does not answer on its cluster address %s: %v", errdefs.ErrUnavailable, req.ID, req.Addr, err)
	}
	if st.ID != req.ID {
		return 0, fmt.Errorf("%w: the node at %s is %q, not %q", errdefs.ErrInvalid, req.Addr, st.ID, req.ID)
	}
	for _, s := range servers {
		sameID, sameAddr := string(s.ID) == req.ID, string(s.Address) == req.Addr
		if !sameID && !sameAddr {
			continue
		}
		// An entry at the new member's address is a member gone from it
		// (the address answers as the new member now).
		if sameID && !sameAddr {
			// A member rebuilt on a new address takes its old entry over;
			// a live member keeps its own: the id is taken.
			ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
			st, err := c.PeerStatus(ctx, string(s.Address))
			cancel()
			if err == nil && st.ID == req.ID {
				return 0, fmt.Errorf("%w: node id %q is a live member at %s: join under another id, or remove it first (dse members remove %s)", errdefs.ErrExists, req.ID, s.Address, req.ID)
			}
		}
		c.logger.Info("replacing member", "id", s.ID, "address", s.Address, "new-id", req.ID, "new-address", req.Addr)
		if err := c.waitFuture(c.raft.RemoveServer(s.ID, 0, timeout)); err != nil {
			return 0, fmt.Errorf("%w: remove old member %s: %v", errdefs.ErrUnavailable, s.ID, err)
		}
	}
	var f raft.IndexFuture
	if req.Voter {
		f = c.raft.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, timeout)
	} else {
		f = c.raft.AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, timeout)
	}
	if err := c.waitFuture(f); err != nil {
		return 0, fmt.Errorf("%w: add member %s: %v", errdefs.ErrUnavailable, req.ID, err)
	}
	c.logger.Info("member added", "id", req.ID, "address", req.Addr, "voter", req.Voter)
	return c.upsertNodeLocal(req)
}

func (c *Membership) upsertNodeLocal(req JoinRequest) (uint64, error) {
	res, index, err := c.applyLocal(fsm.MustEncode(fsm.CmdNodeUpsert, fsm.NodeUpsert{ID: req.ID, Addr: req.Addr, HTTPAddr: req.HTTPAddr}))
	if err != nil {
		return 0, err
	}
	ar := toApplyResult(res)
	return index, ar.err()
}

// Remove takes a member out of the cluster. Unless force is set it refuses,
// with errdefs.ErrQuorum, a removal after which the live voters could not elect a
// leader.
func (c *Membership) Remove(ctx context.Context, id string, force bool) error {
	_, err := c.leaderDo(ctx, leaderOp{Op: "remove", ID: id, Force: force})
	return err
}

func (c *Membership) removeLocal(id string, force bool) (uint64, error) {
	servers, _, err := c.Configuration()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errdefs.ErrUnavailable, err)
	}
	var target *raft.Server
	for i, s := range servers {
		if string(s.ID) == id {
			target = &servers[i]
		}
	}
	if target == nil {
		return 0, fmt.Errorf("%w: %q", errdefs.ErrMemberNotFound, id)
	}
	if err := c.checkQuorumWithout(servers, id); err != nil && (!force || errors.Is(err, errLastVoter)) {
		return 0, err
	}
	if err := c.waitFuture(c.raft.RemoveServer(target.ID, 0, c.cfg.ApplyTimeout)); err != nil {
		return 0, fmt.Errorf("%w: remove %s: %v", errdefs.ErrUnavailable, id, err)
	}
	c.logger.Info("member removed", "id", id, "forced", force)
	if id == c.id {
		// The leader removed itself and stepped down: the next leader's
		// registry cleanup is the removed node's own business now.
		return 0, nil
	}
	res, index, err := c.applyLocal(fsm.MustEncode(fsm.CmdNodeRemove, fsm.NodeRemove{ID: id}))
	if err != nil {
		return 0, err
	}
	if ar := toApplyResult(res); ar.err() != nil && errdefs.Code(ar.err()) != "member_not_found" {
		err := ar.err()
		return index, err
	}
	return index, nil
}

// errLastVoter is wrapped by checkQuorumWithout's refusal to remove the
// last voter, which --force does not override.
var errLastVoter = errors.New("the last voter")

// checkQuorumWithout refuses, with errdefs.ErrQuorum, the removal of member id
// from servers when the live voters left could not elect a leader. A voter
// is live when the registry has it up and it answers on its cluster port
// now: the registry marks a node down only after the liveness grace, and a
// removal in that window counted a dead node as live.
func (c *Membership) checkQuorumWithout(servers []raft.Server, id string) error {
	var voters []raft.Server
	var target *raft.Server
	for i, s := range servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, s)
			if string(s.ID) == id {
				target = &servers[i]
			}
		}
	}
	if target == nil {
		return nil // a non-voter: quorum does not change
	}
	after := len(voters) - 1
	if after == 0 {
		return fmt.Errorf("%w: %q is %w", errdefs.ErrQuorum, id, errLastVoter)
	}
	live := make([]bool, len(voters))
	var wg sync.WaitGroup
	for i, s := range voters {
		if string(s.ID) == id {
			continue
		}
		if string(s.ID) == c.id {
			live[i] = true
			continue
		}
		if node, ok := c.fsm.Node(string(s.ID)); !ok || !node.Up {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Twice, each up to a heartbeat timeout (1 s at least): the ask
			// shares its connection with publication pushes, and a busy
			// peer that misses once is not dead.
			for range 2 {
				ctx, cancel := context.WithTimeout(c.ctx, max(time.Second, c.cfg.HeartbeatTimeout))
				st, err := c.PeerStatus(ctx, string(s.Address))
				cancel()
				if live[i] = err == nil && st.ID == string(s.ID); live[i] {
					return
				}
			}
		}()
	}
	wg.Wait()
	liveAfter := 0
	for _, l := range live {
		if l {
			liveAfter++
		}
	}
	if need := after/2 + 1; liveAfter < need {
		return fmt.Errorf("%w: removing %q leaves %d live of %d voters, %d needed (use --force to remove anyway)", errdefs.ErrQuorum, id, liveAfter, after, need)
	}
	return nil
}

// Promote turns a non-voter into a voter.
func (c *Membership) Promote(ctx context.Context, id string) error {
	_, err := c.leaderDo(ctx, leaderOp{Op: "promote", ID: id})
	return err
}

func (c *Membership) promoteLocal(id string) (uint64, error) {
	servers, _, err := c.Configuration()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errdefs.ErrUnavailable, err)
	}
	for _, s := range servers {
		if string(s.ID) != id {
			continue
		}
		if s.Suffrage == raft.Voter {
			return 0, fmt.Errorf("%w: %q is already a voter", errdefs.ErrInvalid, id)
		}
		f := c.raft.AddVoter(s.ID, s.Address, 0, c.cfg.ApplyTimeout)
		if err := c.waitFuture(f); err != nil {
			return 0, fmt.Errorf("%w: promote %s: %v", errdefs.ErrUnavailable, id, err)
		}
		c.logger.Info("member promoted", "id", id)
		return f.Index(), nil
	}
	return 0, fmt.Errorf("%w: %q", errdefs.ErrMemberNotFound, id)
}

// TransferLeadership moves leadership to the member to (any voter if empty)
// and waits until a new leader is in place. It returns the new leader's id.
func (c *Membership) TransferLeadership(ctx context.Context, to string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.ApplyTimeout)
		defer cancel()
	}
	old, _ := c.Leader()
	rep, err := c.leaderDo(ctx, leaderOp{Op: "transfer", ID: to})
	if err != nil {
		return "", err
	}
	if to != "" && rep.Leader == to && old == to {
		return to, nil // it already led
	}
	// Wait until this node, too, sees the new leader.
	for {
		if id, _ := c.Leader(); id != "" && id != old && (to == "" || id == to) {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return rep.Leader, nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *Membership) transferLocal(ctx context.Context, to string) (string, error) {
	var f raft.Future
	if to == "" {
		f = c.raft.LeadershipTransfer()
	} else {
		if to == c.id {
			return c.id, nil
		}
		servers, _, err := c.Configuration()
		if err != nil {
			return "", fmt.Errorf("%w: %v", errdefs.ErrUnavailable, err)
		}
		var target *raft.Server
		for i := range servers {
			if string(servers[i].ID) == to {
				target = &servers[i]
			}
		}
		if target == nil {
			return "", fmt.Errorf("%w: %q", errdefs.ErrMemberNotFound, to)
		}
		if target.Suffrage != raft.Voter {
			return "", fmt.Errorf("%w: %q is not a voter", errdefs.ErrInvalid, to)
		}
		f = c.raft.LeadershipTransferToServer(target.ID, target.Address)
	}
	if err := c.waitFuture(f); err != nil {
		return "", fmt.Errorf("%w: leadership transfer: %v", errdefs.ErrUnavailable, err)
	}
	for {
		if id, _ := c.Leader(); id != "" && id != c.id {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: waiting for the new leader: %v", errdefs.ErrUnavailable, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Leave removes this node from the cluster gracefully and stops it: a leader
// hands leadership over first. The removal is refused, like Remove, when it
// would cost the cluster its quorum.
func (c *Membership) Leave(ctx context.Context) error {
	if c.IsLeader() {
		servers, _, err := c.Configuration()
		if err != nil {
			return fmt.Errorf("%w: %v", errdefs.ErrUnavailable, err)
		}
		voters := 0
		for _, s := range servers {
			if s.Suffrage == raft.Voter {
				voters++
			}
		}
		// Refused here, before leadership moves, if it would be refused
		// after: a refused leave changes nothing.
		if err := c.checkQuorumWithout(servers, c.id); err != nil {
			return err
		}
		if voters > 1 {
			if _, err := c.TransferLeadership(ctx, ""); err != nil {
				return err
			}
		}
	}
	if err := c.Remove(ctx, c.id, false); err != nil {
		return err
	}
	c.logger.Info("left the cluster")
	return nil
}

// SnapshotInfo describes a Raft snapshot.
type SnapshotInfo struct {
	Index uint64 // the last log index it holds
	Bytes int64  // its size, as the snapshot store keeps it
}

// Snapshot takes a Raft snapshot now and describes it.
func (c *Membership) Snapshot() (SnapshotInfo, error) {
	f := c.raft.Snapshot()
	if err := f.Error(); err != nil {
		return SnapshotInfo{}, err
	}
	meta, rc, err := f.Open()
	if err != nil {
		return SnapshotInfo{}, err
	}
	rc.Close()
	return SnapshotInfo{Index: meta.Index, Bytes: meta.Size}, nil
}
