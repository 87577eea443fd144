package fsm

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

func BenchmarkApplyPublish(b *testing.B) {
	f := New()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: MustEncode(CmdNodeUpsert, NodeUpsert{ID: "n", Addr: "a"})})
	f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: MustEncode(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n"})})
	s, _ := f.Service("s")
	data := MustEncode(CmdPublish, Publish{Requests: []PublishRequest{{Service: "s", Incarnation: s.Incarnation, Table: "t", Count: 100}}})
	i := uint64(3)
	for b.Loop() {
		f.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: data})
		i++
	}
}

// BenchmarkApplyPublishTables is one seqnum entry of a batcher cycle at
// 4,096 tables: a request per table, as the leader's batcher sends with
// one publication in flight on each.
func BenchmarkApplyPublishTables(b *testing.B) {
	f := New()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: MustEncode(CmdNodeUpsert, NodeUpsert{ID: "n", Addr: "a"})})
	f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: MustEncode(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n"})})
	s, _ := f.Service("s")
	cmd := Publish{}
	for t := range 4096 {
		cmd.Requests = append(cmd.Requests, PublishRequest{Service: "s", Incarnation: s.Incarnation, Table: fmt.Sprintf("t%d", t), Count: 1})
	}
	data := MustEncode(CmdPublish, cmd)
	b.SetBytes(int64(len(data)))
	i := uint64(3)
	for b.Loop() {
		f.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: data})
		i++
	}
}

// BenchmarkApplyRegistryWrite is a subscribe and an unsubscribe on an
// empty registry and on one of 100,000 services with 10 published tables
// each and 100,000 subscriptions: a registry write must not cost more as
// the registry grows.
func BenchmarkApplyRegistryWrite(b *testing.B) {
	for _, services := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) {
			f := New()
			i := uint64(1)
			apply := func(t CommandType, v any) {
				f.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: MustEncode(t, v)})
				i++
			}
			apply(CmdNodeUpsert, NodeUpsert{ID: "n", Addr: "a"})
			apply(CmdServiceRegister, ServiceRegister{ID: "sub", Node: "n"})
			apply(CmdServiceRegister, ServiceRegister{ID: "pub", Node: "n"})
			for k := range services {
				id := fmt.Sprintf("s%d", k)
				apply(CmdServiceRegister, ServiceRegister{ID: id, Node: "n"})
				s, _ := f.Service(id)
				cmd := Publish{}
				for t := range 10 {
					cmd.Requests = append(cmd.Requests, PublishRequest{Service: id, Incarnation: s.Incarnation, Table: fmt.Sprintf("t%d", t), Count: 1})
				}
				apply(CmdPublish, cmd)
				apply(CmdSubscribe, Subscribe{Subscriber: fmt.Sprintf("s%d", (k+1)%services), Publisher: id, Table: "t0"})
			}
			sub := MustEncode(CmdSubscribe, Subscribe{Subscriber: "sub", Publisher: "pub", Table: "t"})
			unsub := MustEncode(CmdUnsubscribe, Unsubscribe{Subscriber: "sub", Publisher: "pub", Table: "t"})
			for b.Loop() {
				f.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: sub})
				f.Apply(&raft.Log{Index: i + 1, Type: raft.LogCommand, Data: unsub})
				i += 2
			}
		})
	}
}
