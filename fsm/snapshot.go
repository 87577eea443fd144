package fsm

import (
	"bufio"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// snapshotVersion is written first in every snapshot; Restore refuses others.
const snapshotVersion = 1

// snapshotData is the persisted form of state: sorted slices, so the bytes
// depend only on the state, never on map order.
type snapshotData struct {
	Version       int            `msgpack:"version"`
	Index         uint64         `msgpack:"index"`
	Nodes         []Node         `msgpack:"nodes"`
	Services      []Service      `msgpack:"services"`
	Subscriptions []Subscription `msgpack:"subscriptions"`
	Seqnums       []TableSeq     `msgpack:"seqnums"`
	Datasources   []Datasource   `msgpack:"datasources"`
	Tokens        []Token        `msgpack:"tokens"`
	Origins       []OriginState  `msgpack:"origins"`
}

type snapshot struct{ s *state }

var _ raft.FSMSnapshot = (*snapshot)(nil)

// Persist encodes the cloned state into the sink.
func (sn *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriter(sink)
	if err := sn.s.encode(w); err != nil {
		sink.Cancel()
		return err
	}
	if err := w.Flush(); err != nil {
		sink.Cancel()
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the clone is garbage collected.
func (sn *snapshot) Release() {}

func (s *state) encode(w io.Writer) error {
	d := snapshotData{Version: snapshotVersion, Index: s.index}
	for _, id := range sortedKeys(s.nodes) {
		d.Nodes = append(d.Nodes, *s.nodes[id])
	}
	for _, id := range sortedKeys(s.services) {
		d.Services = append(d.Services, *s.services[id])
	}
	d.Subscriptions = s.subscriptions(func(Subscription) bool { return true })
	for _, p := range sortedKeys(s.seqnums) {
		for _, t := range sortedKeys(s.seqnums[p]) {
			d.Seqnums = append(d.Seqnums, TableSeq{Publisher: p, Table: t, Seqnum: s.seqnums[p][t]})
		}
	}
	for _, id := range sortedKeys(s.datasources) {
		d.Datasources = append(d.Datasources, *s.datasources[id])
	}
	for _, id := range sortedKeys(s.tokens) {
		d.Tokens = append(d.Tokens, *s.tokens[id])
	}
	for _, name := range sortedKeys(s.origins) {
		d.Origins = append(d.Origins, s.origins[name].persist(name))
	}
	enc := msgpack.NewEncoder(w)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(&d); err != nil {
		return fmt.Errorf("fsm: encode snapshot: %w", err)
	}
	return nil
}

func readSnapshot(r io.Reader) (*state, error) {
	var d snapshotData
	if err := msgpack.NewDecoder(bufio.NewReader(r)).Decode(&d); err != nil {
		return nil, fmt.Errorf("fsm: decode snapshot: %w", err)
	}
	if d.Version != snapshotVersion {
		return nil, fmt.Errorf("fsm: snapshot version %d, want %d", d.Version, snapshotVersion)
	}
	s := newState()
	s.index = d.Index
	for i := range d.Nodes {
		n := d.Nodes[i]
		s.nodes[n.ID] = &n
	}
	for i := range d.Services {
		v := d.Services[i]
		s.services[v.ID] = &v
	}
	for _, sub := range d.Subscriptions {
		s.addSub(sub)
	}
	for _, ts := range d.Seqnums {
		tables, ok := s.seqnums[ts.Publisher]
		if !ok {
			tables = map[string]uint64{}
			s.seqnums[ts.Publisher] = tables
		}
		tables[ts.Table] = ts.Seqnum
	}
	for i := range d.Datasources {
		ds := d.Datasources[i]
		s.datasources[ds.ID] = &ds
	}
	for i := range d.Tokens {
		t := d.Tokens[i]
		s.tokens[t.ID] = &t
	}
	for _, o := range d.Origins {
		s.origins[o.Origin] = restoreOrigin(o)
	}
	s.reindexAll()
	return s, nil
}
