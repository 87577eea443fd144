package cluster

import (
	"context"
	"fmt"
	"sync"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/fsm"
)

// maxBatchBytes bounds the encoded commands of one registry batch, well
// under fsm.MaxCommandSize.
const maxBatchBytes = 1 << 20

// applyReq is one registry write waiting for its Raft entry.
type applyReq struct {
	ctx  context.Context
	cmd  []byte
	key  string // service id of a register/unregister, else ""
	done chan error
}

// registryBatcher is the registry's group commit: the registry writes this node
// makes concurrently (register, subscribe, liveness, tokens, ...) queue up
// while maxApplyBatches entries are in flight and go to the leader together
// as one fsm.Batch entry, with one forward, one commit and one wait for the local
// FSM. Each write keeps its own result. A lone write goes as itself.
type registryBatcher struct {
	c    *Membership
	mu   sync.Mutex
	q    []*applyReq
	kick chan struct{}
}

func newRegistryBatcher(c *Membership) *registryBatcher {
	return &registryBatcher{c: c, kick: make(chan struct{}, 1)}
}

// do commits cmd, batched with whatever else is waiting, and returns its
// result.
func (b *registryBatcher) do(ctx context.Context, cmd []byte, key string) error {
	r := &applyReq{ctx: ctx, cmd: cmd, key: key, done: make(chan error, 1)}
	b.mu.Lock()
	b.q = append(b.q, r)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default: // a signal already pending covers this one too
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		// Maybe committed, maybe not: the caller must check, as after any
		// apply that timed out.
		return fmt.Errorf("%w: registry write not confirmed: %v", errdefs.ErrUnavailable, ctx.Err())
	case <-b.c.ctx.Done():
		return errdefs.ErrClosed
	}
}

// maxApplyBatches is how many registry batches a node keeps in flight at
// once: a write that arrives while they all wait joins the next one.
const maxApplyBatches = 8

func (b *registryBatcher) run() {
	slots := make(chan struct{}, maxApplyBatches)
	for {
		select {
		case <-b.c.ctx.Done():
			b.failAll()
			return
		case <-b.kick:
		}
		for {
			select {
			case slots <- struct{}{}:
			case <-b.c.ctx.Done():
				b.failAll()
				return
			}
			batch := b.next()
			if len(batch) == 0 {
				<-slots
				break
			}
			b.c.goFunc(func() {
				defer func() { <-slots }()
				b.commitBatch(batch)
			})
		}
	}
}

func (b *registryBatcher) failAll() {
	b.mu.Lock()
	q := b.q
	b.q = nil
	b.mu.Unlock()
	for _, r := range q {
		r.done <- errdefs.ErrClosed
	}
}

// next takes the next batch from the queue. A batch holds each service's register or unregister at most once (its
// incarnation is the entry's index) and stays under maxBatchBytes; the rest
// waits for the next entry, in order.
func (b *registryBatcher) next() []*applyReq {
	b.mu.Lock()
	var (
		batch []*applyReq
		rest  []*applyReq
		size  int
		keys  map[string]bool
	)
	for _, r := range b.q {
		if r.ctx.Err() != nil {
			continue // its caller has gone: never commit it behind its back
		}
		full := len(batch) > 0 && (size+len(r.cmd) > maxBatchBytes || (r.key != "" && keys[r.key]))
		if full || len(rest) > 0 {
			rest = append(rest, r)
			continue
		}
		batch = append(batch, r)
		size += len(r.cmd)
		if r.key != "" {
			if keys == nil {
				keys = map[string]bool{}
			}
			keys[r.key] = true
		}
	}
	b.q = rest
	b.mu.Unlock()
	return batch
}

// commitBatch commits a batch as one entry and answers each request.
func (b *registryBatcher) commitBatch(batch []*applyReq) {
	ctx, cancel := context.WithTimeout(b.c.ctx, b.c.cfg.ApplyTimeout)
	defer cancel()
	if len(batch) == 1 {
		batch[0].done <- b.commit(ctx, batch[0].cmd, 1)[0]
		return
	}
	cmds := make([][]byte, len(batch))
	for i, r := range batch {
		cmds[i] = r.cmd
	}
	data, err := fsm.Encode(fsm.CmdBatch, fsm.Batch{Commands: cmds})
	var errs []error
	if err != nil {
		errs = fill(len(batch), fmt.Errorf("%w: %v", errdefs.ErrInvalid, err))
	} else {
		errs = b.commit(ctx, data, len(batch))
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// commit applies one entry holding want commands (a batch when want > 1)
// and returns each command's error.
func (b *registryBatcher) commit(ctx context.Context, data []byte, want int) []error {
	rep, err := b.c.leaderDo(ctx, leaderOp{Op: "apply", Cmd: data})
	switch {
	case err != nil:
		return fill(want, err)
	case rep.Apply == nil:
		return fill(want, fmt.Errorf("%w: leader sent no apply result", errdefs.ErrUnavailable))
	case want == 1:
		return []error{rep.Apply.err()}
	case rep.Apply.Code != "":
		return fill(want, rep.Apply.err())
	case len(rep.Apply.Items) != want:
		return fill(want, fmt.Errorf("%w: %d results for a batch of %d", errdefs.ErrUnavailable, len(rep.Apply.Items), want))
	}
	errs := make([]error, want)
	for i := range errs {
		errs[i] = rep.Apply.Items[i].err()
	}
	return errs
}

func fill(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// batchKey is what a registry batch may hold only once: a service's
// ownership change.
func batchKey(body any) string {
	switch c := body.(type) {
	case fsm.ServiceRegister:
		return c.ID
	case fsm.ServiceUnregister:
		return c.ID
	}
	return ""
}
