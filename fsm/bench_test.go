package fsm

import (
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
