package cli_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The chaos suite's external publisher (issue 18, point 5): a service
// created with 3 replicas, a client publishing numbered contents through
// randomly chosen nodes during the faults, recording which publishes were
// acknowledged, and a watcher of the service's table on every node.
//
// Content #k is the table [["k",k],["part",k,1],["part",k,2]]: each is
// distinct, and a watcher's reconstructed table names the publish it came
// from. The publisher is sequential: attempt k+1 starts once attempt k
// was answered (acknowledged with a seqnum, or failed: a failure may or
// may not have taken effect) or timed out.
//
// The checker's rules:
//   - every content a watcher shows, or a get answers, is one a publish
//     submitted (content #k with k already sent), and each seqnum carries
//     one content wherever it is seen;
//   - a watcher's seqnums strictly increase (in each watch session);
//   - no publication acknowledged at seqnum s is lost: a content seen
//     under s is the acknowledged one, one seen under a later seqnum is
//     the acknowledged one or a later attempted one, and so is the final
//     content (got through every node once the faults stop and the
//     cluster has converged). Each acknowledged publish that breaks this
//     counts as lost; lost must be 0;
//   - a publish that failed saying it did not take effect is never seen;
//   - acknowledged seqnums increase with k.
//
// A watcher may see a content go back (a publication the old owner
// pushed but never had acknowledged, dropped by the new owner's
// republication): that is allowed and reported.

const extSvc, extTbl = "ext", "t"

// extRows is the JSON of content #k.
func extRows(k int64) string {
	return fmt.Sprintf(`[["k",%d],["part",%d,1],["part",%d,2]]`, k, k, k)
}

// extState decodes a table (rows as JSON text) back to its k.
func extState(rows map[string]bool) (int64, bool) {
	if len(rows) != 3 {
		return 0, false
	}
	k := int64(-1)
	parts := map[int64]int64{}
	for r := range rows {
		var row []any
		if json.Unmarshal([]byte(r), &row) != nil {
			return 0, false
		}
		name, _ := row[0].(string)
		switch {
		case name == "k" && len(row) == 2:
			v, ok := row[1].(float64)
			if !ok {
				return 0, false
			}
			k = int64(v)
		case name == "part" && len(row) == 3:
			v, ok1 := row[1].(float64)
			i, ok2 := row[2].(float64)
			if !ok1 || !ok2 {
				return 0, false
			}
			parts[int64(i)] = int64(v)
		default:
			return 0, false
		}
	}
	return k, k >= 1 && len(parts) == 2 && parts[1] == k && parts[2] == k
}

// extAttempt is one publish the publisher tried.
type extAttempt struct {
	k          int64
	node       string
	start, end time.Time
	acked      bool
	seq        uint64
	notRun     bool // failed saying it did not take effect
	err        string
}

// extObs is one content seen: by a watcher's line or a get's answer.
type extObs struct {
	seq   uint64
	k     int64
	where string
	at    time.Time
}

// extPublisher is the client that publishes, and the record the checker
// reads.
type extPublisher struct {
	rng    *rand.Rand // the publisher goroutine's
	client *http.Client
	// run is held for each attempt: pause takes it, so that no attempt
	// is in flight while the suite checks convergence.
	run sync.Mutex

	mu       sync.Mutex
	addrs    map[string]string // node id → HTTP address, the current members
	attempts []extAttempt
	sent     int64 // the highest k sent
	obs      []extObs
	bySeq    map[uint64]int64
	wentBack int
	stopped  bool
	st       *chaosState // where violations go
	done     chan struct{}
}

func newExtPublisher(seed uint64, st *chaosState) *extPublisher {
	return &extPublisher{
		rng:    rand.New(rand.NewPCG(seed, 0xe87)),
		client: &http.Client{Timeout: 20 * time.Second},
		addrs:  map[string]string{},
		bySeq:  map[uint64]int64{},
		st:     st,
		done:   make(chan struct{}),
	}
}

// setNodes sets the members the publisher picks from.
func (p *extPublisher) setNodes(nodes []*chaosNode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.addrs = map[string]string{}
	for _, n := range nodes {
		p.addrs[n.id] = n.http
	}
}

func (p *extPublisher) pick() (string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.addrs))
	for id := range p.addrs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	id := ids[p.rng.IntN(len(ids))]
	return id, p.addrs[id]
}

// start publishes content #k, k = 1, 2, ..., until stop.
func (p *extPublisher) start() {
	go func() {
		defer close(p.done)
		for {
			p.run.Lock()
			p.mu.Lock()
			stopped := p.stopped
			p.mu.Unlock()
			if stopped {
				p.run.Unlock()
				return
			}
			p.publishNext()
			p.run.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
}

// publishNext sends the next content through a random member until one
// takes the request (a refused connection certainly did nothing), and
// records the attempt.
func (p *extPublisher) publishNext() {
	p.mu.Lock()
	p.sent++
	k := p.sent
	p.mu.Unlock()
	for {
		id, addr := p.pick()
		a := extAttempt{k: k, node: id, start: time.Now()}
		req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/v1/services/"+extSvc+"/tables/"+extTbl, strings.NewReader(extRows(k)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.client.Do(req)
		a.end = time.Now()
		if errors.Is(err, syscall.ECONNREFUSED) {
			time.Sleep(20 * time.Millisecond)
			continue // the node is down: another
		}
		if err != nil {
			a.err = err.Error()
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var res struct {
				Seqnum  uint64 `json:"seqnum"`
				Changed bool   `json:"changed"`
			}
			if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &res) == nil {
				a.acked, a.seq = true, res.Seqnum
				if !res.Changed {
					p.st.violate("external: publish #%d acknowledged at seqnum %d as no change", k, res.Seqnum)
				}
			} else {
				a.err = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
				a.notRun = strings.Contains(a.err, "did not take effect")
			}
		}
		p.mu.Lock()
		p.attempts = append(p.attempts, a)
		p.mu.Unlock()
		return
	}
}

func (p *extPublisher) pause()  { p.run.Lock() }
func (p *extPublisher) resume() { p.run.Unlock() }

// stop ends the publisher once its attempt in flight is answered.
func (p *extPublisher) stop() {
	p.mu.Lock()
	already := p.stopped
	p.stopped = true
	p.mu.Unlock()
	if !already {
		<-p.done
	}
}

// lastAcked returns the last acknowledged attempt (k 0 if none).
func (p *extPublisher) lastAcked() extAttempt {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.attempts) - 1; i >= 0; i-- {
		if p.attempts[i].acked {
			return p.attempts[i]
		}
	}
	return extAttempt{}
}

// seen checks and records a content seen at seq; it returns k, or a
// problem.
func (p *extPublisher) seen(where string, seq uint64, rows map[string]bool) (int64, string) {
	k, ok := extState(rows)
	if !ok {
		return 0, fmt.Sprintf("holds %q, no publish's content", contentKey(rows))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if k > p.sent {
		return k, fmt.Sprintf("holds content #%d, not sent yet (sent up to #%d)", k, p.sent)
	}
	if prev, ok := p.bySeq[seq]; ok && prev != k {
		return k, fmt.Sprintf("seqnum %d carries content #%d, elsewhere #%d", seq, k, prev)
	}
	p.bySeq[seq] = k
	p.obs = append(p.obs, extObs{seq: seq, k: k, where: where, at: time.Now()})
	return k, ""
}

func (p *extPublisher) noteWentBack() {
	p.mu.Lock()
	p.wentBack++
	p.mu.Unlock()
}

// get reads the table through node addr (HTTP, as `dse get`), and
// records what it saw.
func (p *extPublisher) get(id, addr string) (k int64, seq uint64, ok bool) {
	cl := &http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get("http://" + addr + "/v1/services/" + extSvc + "/tables/" + extTbl)
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	var tc struct {
		Seqnum uint64            `json:"seqnum"`
		Rows   []json.RawMessage `json:"rows"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tc) != nil {
		return 0, 0, false
	}
	rows := map[string]bool{}
	for _, r := range tc.Rows {
		rows[string(r)] = true
	}
	k, problem := p.seen("get on "+id, tc.Seqnum, rows)
	if problem != "" {
		p.st.violate("external: get on %s at seqnum %d %s", id, tc.Seqnum, problem)
		return 0, 0, false
	}
	return k, tc.Seqnum, true
}

// local reads node addr's own copy of the table (an RPC with local: the
// owner's table, or the replica's), and records what it saw.
func (p *extPublisher) local(id, addr string) (k int64, seq uint64, ok bool) {
	cl := &http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Post("http://"+addr+"/v1/rpc/"+extSvc+"/get_last_published_data_with_seqnum", "application/json",
		strings.NewReader(`{"args":{"table":"`+extTbl+`"},"local":true}`))
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	var tc struct {
		Seqnum uint64            `json:"seqnum"`
		Rows   []json.RawMessage `json:"rows"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tc) != nil {
		return 0, 0, false
	}
	rows := map[string]bool{}
	for _, r := range tc.Rows {
		rows[string(r)] = true
	}
	k, problem := p.seen("the copy on "+id, tc.Seqnum, rows)
	if problem != "" {
		p.st.violate("external: the copy on %s at seqnum %d %s", id, tc.Seqnum, problem)
		return 0, 0, false
	}
	return k, tc.Seqnum, true
}

// extShow is GET /v1/services/{id} (`dse services show --json`).
func extShow(addr string) (serviceShow, bool) {
	var s serviceShow
	cl := &http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get("http://" + addr + "/v1/services/" + extSvc)
	if err != nil {
		return s, false
	}
	defer resp.Body.Close()
	return s, resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&s) == nil
}

// extResult is what the checker found.
type extResult struct {
	acked, failed, notRun, lost int
	violations                  []string
}

// check applies the checker's rules to the record, the final content
// being #final at seqnum finalSeq.
func (p *extPublisher) check(final int64, finalSeq uint64) extResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	var r extResult
	violate := func(format string, a ...any) {
		if len(r.violations) < 20 {
			r.violations = append(r.violations, fmt.Sprintf(format, a...))
		}
	}
	obs := append([]extObs(nil), p.obs...)
	sort.Slice(obs, func(i, j int) bool { return obs[i].seq < obs[j].seq })
	// after[i] is the observation of least k among obs[i:].
	after := make([]int, len(obs))
	for i := len(obs) - 1; i >= 0; i-- {
		after[i] = i
		if i+1 < len(obs) && obs[after[i+1]].k < obs[i].k {
			after[i] = after[i+1]
		}
	}
	seenK := map[int64]bool{final: true}
	for _, o := range obs {
		seenK[o.k] = true
	}
	var lastAcked extAttempt
	for _, a := range p.attempts {
		if !a.acked {
			r.failed++
			if a.notRun {
				r.notRun++
				if seenK[a.k] {
					violate("external: publish #%d through %s failed saying it did not take effect (%s), yet content #%d was seen", a.k, a.node, a.err, a.k)
				}
			}
			continue
		}
		r.acked++
		if lastAcked.acked && a.seq <= lastAcked.seq {
			violate("external: publish #%d acknowledged at seqnum %d, after #%d at seqnum %d", a.k, a.seq, lastAcked.k, lastAcked.seq)
		}
		lastAcked = a
		lost := ""
		i := sort.Search(len(obs), func(i int) bool { return obs[i].seq >= a.seq })
		for j := i; j < len(obs) && obs[j].seq == a.seq; j++ {
			if obs[j].k != a.k {
				lost = fmt.Sprintf("its seqnum %d carried content #%d (%s)", a.seq, obs[j].k, obs[j].where)
				break
			}
		}
		if lost == "" && i < len(obs) {
			if o := obs[after[i]]; o.k < a.k {
				lost = fmt.Sprintf("content #%d seen at the later seqnum %d (%s, %s)", o.k, o.seq, o.where, o.at.Format("15:04:05.000"))
			}
		}
		if lost == "" && final < a.k {
			lost = fmt.Sprintf("the final content is #%d (seqnum %d)", final, finalSeq)
		}
		if lost != "" {
			r.lost++
			violate("external: acknowledged publish #%d (through %s, seqnum %d, answered %s) lost: %s", a.k, a.node, a.seq, a.end.Format("15:04:05.000"), lost)
		}
	}
	if final > p.sent {
		violate("external: the final content #%d was never sent", final)
	}
	if lastAcked.acked && final < lastAcked.k {
		violate("external: the final content #%d is older than the last acknowledged publish #%d", final, lastAcked.k)
	}
	return r
}

// extConverge waits, with the publisher paused, until a get through every
// node answers one content under one seqnum, every watcher of the
// external table shows it, and every node's own copy (each is a replica)
// holds it; it returns them.
func extConverge(t *testing.T, p *extPublisher, nodes []*chaosNode, watchers []*chaosWatcher, what string) (int64, uint64) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		k0, seq0, ok := p.get(nodes[0].id, nodes[0].http)
		for _, n := range nodes[1:] {
			if !ok {
				break
			}
			k, seq, got := p.get(n.id, n.http)
			ok = got && k == k0 && seq == seq0
		}
		for _, w := range watchers {
			if !ok {
				break
			}
			w.mu.Lock()
			k, valid := extState(w.rows)
			ok = valid && k == k0 && uint64(w.lastSeq) == seq0
			w.mu.Unlock()
		}
		for _, n := range nodes {
			if !ok {
				break
			}
			k, seq, got := p.local(n.id, n.http)
			ok = got && k == k0 && seq == seq0
		}
		if ok {
			return k0, seq0
		}
		if time.Now().After(deadline) {
			for _, n := range nodes {
				k, seq, got := p.get(n.id, n.http)
				lk, lseq, lgot := p.local(n.id, n.http)
				show, _ := extShow(n.http)
				t.Logf("%s: get #%d seqnum %d (%v); its copy #%d seqnum %d (%v); services show %+v", n.id, k, seq, got, lk, lseq, lgot, show)
			}
			for _, w := range watchers {
				w.mu.Lock()
				k, _ := extState(w.rows)
				t.Logf("external watcher on %s: #%d seqnum %v, %d lines, %d sessions, last session ended: %s", w.node.id, k, w.lastSeq, w.lines, w.sessions, w.lastErr)
				w.mu.Unlock()
			}
			t.Fatalf("the external service did not converge %s within 45s (last acknowledged: %+v)", what, p.lastAcked())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var digits = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// failures returns how the failed attempts failed: their errors with
// numbers taken out, the most frequent first, with their counts and the
// last of each.
func (p *extPublisher) failures() []string {
	p.mu.Lock()
	by := map[string]int{}
	last := map[string]extAttempt{}
	for _, a := range p.attempts {
		if !a.acked {
			e := digits.ReplaceAllString(a.err, "N")
			by[e]++
			last[e] = a
		}
	}
	p.mu.Unlock()
	var out []string
	for e, n := range by {
		a := last[e]
		out = append(out, fmt.Sprintf("%5d× %s (the last: #%d through %s, %s to %s)", n, e, a.k, a.node, a.start.Format("15:04:05.000"), a.end.Format("15:04:05.000")))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}
