package fsm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"dse.dev/dse/internal/mpcheck"
)

// CommandType is the first byte of every log entry the FSM applies.
type CommandType uint8

// The command types. Values are part of the on-disk log format: never renumber.
const (
	CmdNodeUpsert        CommandType = 1
	CmdNodeRemove        CommandType = 2
	CmdNodeLiveness      CommandType = 3
	CmdServiceRegister   CommandType = 4
	CmdServiceUnregister CommandType = 5
	CmdSubscribe         CommandType = 6
	CmdUnsubscribe       CommandType = 7
	CmdPublish           CommandType = 8
	CmdDatasourceAdd     CommandType = 9
	CmdDatasourceUpdate  CommandType = 10
	CmdDatasourceDelete  CommandType = 11
	CmdDatasourcePlace   CommandType = 12
	CmdBatch             CommandType = 13
	CmdTokenCreate       CommandType = 14
	CmdTokenRevoke       CommandType = 15
	CmdOnce              CommandType = 16
)

// String returns the command's name, for logs and metrics.
func (t CommandType) String() string {
	if int(t) < len(commandNames) && commandNames[t] != "" {
		return commandNames[t]
	}
	return fmt.Sprintf("command(%d)", uint8(t))
}

var commandNames = [...]string{
	CmdNodeUpsert:        "node-upsert",
	CmdNodeRemove:        "node-remove",
	CmdNodeLiveness:      "node-liveness",
	CmdServiceRegister:   "service-register",
	CmdServiceUnregister: "service-unregister",
	CmdSubscribe:         "subscribe",
	CmdUnsubscribe:       "unsubscribe",
	CmdPublish:           "publish",
	CmdDatasourceAdd:     "datasource-add",
	CmdDatasourceUpdate:  "datasource-update",
	CmdDatasourceDelete:  "datasource-delete",
	CmdDatasourcePlace:   "datasource-place",
	CmdBatch:             "batch",
	CmdTokenCreate:       "token-create",
	CmdTokenRevoke:       "token-revoke",
	CmdOnce:              "once",
	CmdServiceCreate:     "service-create", // replicas.go
	CmdReplicaSync:       "replica-sync",   // replicas.go
	CmdReplicaMove:       "replica-move",   // replicas.go
	CmdServiceAttach:     "service-attach", // attach.go
	CmdServiceDetach:     "service-detach", // attach.go
	CmdReplicaResign:     "replica-resign", // replicas.go
}

// NodeUpsert adds a node to the registry or updates its addresses, and marks
// it up.
type NodeUpsert struct {
	ID       string `msgpack:"id"`
	Addr     string `msgpack:"addr"`
	HTTPAddr string `msgpack:"http"`
}

// NodeRemove removes a node and every service instance it hosted.
type NodeRemove struct {
	ID string `msgpack:"id"`
}

// NodeLiveness records the leader's view of a node's reachability. Services
// owned by a node that goes down move to a standby instance on a live node.
type NodeLiveness struct {
	ID string `msgpack:"id"`
	Up bool   `msgpack:"up"`
}

// ServiceRegister adds an instance of a service on a node. The first live
// instance becomes the owner (the one publisher); others stand by.
type ServiceRegister struct {
	ID        string   `msgpack:"id"`
	Node      string   `msgpack:"node"`
	Kind      string   `msgpack:"kind"`
	Endpoints []string `msgpack:"endpoints"`
	// Exclusive creates the service or fails with ErrServiceExists: two
	// creates racing from two nodes each passed their own node's check
	// and both made an instance.
	Exclusive bool `msgpack:"excl,omitempty"`
}

// ServiceUnregister removes a service's instance on Node, or every instance
// when Node is empty. A service left with no instance is deleted together with
// its subscriptions (as a subscriber); its seqnums are kept so they are never
// reused.
type ServiceUnregister struct {
	ID   string `msgpack:"id"`
	Node string `msgpack:"node"`
}

// Subscribe records that Subscriber wants Publisher's Table. The publisher
// need not exist yet.
type Subscribe struct {
	Subscriber string `msgpack:"subscriber"`
	Publisher  string `msgpack:"publisher"`
	Table      string `msgpack:"table"`
}

// Unsubscribe removes one subscription.
type Unsubscribe Subscribe

// PublishRequest asks for Count consecutive seqnums of one table, on behalf of
// the owner incarnation of Service: by default the next ones.
//
// An owner that has already sent the publications to its replicas under
// the seqnums it expects (package publish speculates for replicated
// services) says so in First: the request is then granted only if First
// is the table's next seqnum, and refused with ErrSeqnumTaken otherwise.
// An owner whose speculation may have left seqnums on replicas that the
// registry never granted skips past them: the grant starts after After
// (when it is past the table's seqnum) and Skip more, so that no seqnum is
// ever granted for content other than what a replica may hold under it
// (a table never granted has none, and skips nothing).
type PublishRequest struct {
	Service     string `msgpack:"s"`
	Incarnation uint64 `msgpack:"i"`
	Table       string `msgpack:"t"`
	Count       uint64 `msgpack:"n"`
	First       uint64 `msgpack:"f,omitempty"`
	After       uint64 `msgpack:"a,omitempty"`
	Skip        uint64 `msgpack:"k,omitempty"`
}

// Publish assigns seqnums to many publications of many tables in one entry
// (group commit). Its result is a []PublishGrant, one per request, in order.
type Publish struct {
	Requests []PublishRequest `msgpack:"r"`
}

// PublishGrant is the answer to one PublishRequest: seqnums First through
// First+Count-1, or Err when the request was refused (for example fenced).
type PublishGrant struct {
	First uint64
	Err   error
}

// DatasourceAdd registers a datasource configuration.
type DatasourceAdd struct {
	Datasource Datasource `msgpack:"ds"`
}

// DatasourceUpdate changes the given fields of a datasource; nil means keep.
type DatasourceUpdate struct {
	ID          string         `msgpack:"id"`
	Config      map[string]any `msgpack:"config"`
	Enabled     *bool          `msgpack:"enabled"`
	Description *string        `msgpack:"description"`
}

// DatasourceDelete removes a datasource configuration.
type DatasourceDelete struct {
	ID string `msgpack:"id"`
}

// DatasourcePlace records the node that runs a datasource, with a new
// incarnation; an empty Node means it runs nowhere.
type DatasourcePlace struct {
	ID   string `msgpack:"id"`
	Node string `msgpack:"node"`
}

// TokenCreate stores an API token: its id, name, role and the SHA-256 of its
// secret (never the secret).
type TokenCreate struct {
	Token Token `msgpack:"token"`
}

// TokenRevoke deletes a token.
type TokenRevoke struct {
	ID string `msgpack:"id"`
}

// Batch applies several encoded commands in one log entry, in order. Its
// result is a []any with each command's result.
type Batch struct {
	Commands [][]byte `msgpack:"c"`

	decoded []command // filled by Decode
}

// MaxCommandSize bounds an encoded command; larger ones are refused by Encode
// so that no entry the FSM cannot reasonably hold is ever committed.
const MaxCommandSize = 16 << 20

// ErrCommandTooLarge is returned by Encode for a command over MaxCommandSize.
var ErrCommandTooLarge = errors.New("fsm: command too large")

// Encode returns the log entry for a command: the type byte, then body as
// msgpack with sorted map keys.
func Encode(t CommandType, body any) ([]byte, error) {
	var buf bytes.Buffer
	if p, ok := body.(Publish); ok {
		// Thousands of requests: grown by doubling, the buffer was
		// copied a dozen times an entry (166 bytes a publication at
		// 4,096 tables).
		size := 16
		for i := range p.Requests {
			size += 40 + len(p.Requests[i].Service) + len(p.Requests[i].Table)
		}
		buf.Grow(size)
	}
	buf.WriteByte(byte(t))
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(body); err != nil {
		return nil, fmt.Errorf("fsm: encode %s: %w", t, err)
	}
	if buf.Len() > MaxCommandSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrCommandTooLarge, t, buf.Len(), MaxCommandSize)
	}
	return buf.Bytes(), nil
}

// MustEncode is Encode for bodies known to encode (fixed command structs).
func MustEncode(t CommandType, body any) []byte {
	b, err := Encode(t, body)
	if err != nil {
		panic(err)
	}
	return b
}

// ErrBadCommand is returned by Decode for an entry it cannot decode.
var ErrBadCommand = errors.New("fsm: malformed command")

// command is one decoded entry ready to apply.
type command interface {
	apply(s *state, index uint64) any
}

// decoders maps each type byte to a constructor of its body.
var decoders = map[CommandType]func() command{
	CmdNodeUpsert:        func() command { return new(NodeUpsert) },
	CmdNodeRemove:        func() command { return new(NodeRemove) },
	CmdNodeLiveness:      func() command { return new(NodeLiveness) },
	CmdServiceRegister:   func() command { return new(ServiceRegister) },
	CmdServiceUnregister: func() command { return new(ServiceUnregister) },
	CmdSubscribe:         func() command { return new(Subscribe) },
	CmdUnsubscribe:       func() command { return new(Unsubscribe) },
	CmdPublish:           func() command { return new(Publish) },
	CmdDatasourceAdd:     func() command { return new(DatasourceAdd) },
	CmdDatasourceUpdate:  func() command { return new(DatasourceUpdate) },
	CmdDatasourceDelete:  func() command { return new(DatasourceDelete) },
	CmdDatasourcePlace:   func() command { return new(DatasourcePlace) },
	CmdBatch:             func() command { return new(Batch) },
	CmdTokenCreate:       func() command { return new(TokenCreate) },
	CmdTokenRevoke:       func() command { return new(TokenRevoke) },
	CmdOnce:              func() command { return new(Once) },
	CmdServiceCreate:     func() command { return new(ServiceCreate) }, // replicas.go
	CmdReplicaSync:       func() command { return new(ReplicaSync) },   // replicas.go
	CmdReplicaMove:       func() command { return new(ReplicaMove) },   // replicas.go
	CmdReplicaResign:     func() command { return new(ReplicaResign) }, // replicas.go
	CmdServiceAttach:     func() command { return new(ServiceAttach) }, // attach.go
	CmdServiceDetach:     func() command { return new(ServiceDetach) }, // attach.go
}

// Decode parses a log entry. It never panics: the caller decides what an
// undecodable entry means.
func Decode(data []byte) (CommandType, command, error) {
	if len(data) == 0 {
		return 0, nil, fmt.Errorf("%w: empty entry", ErrBadCommand)
	}
	t := CommandType(data[0])
	mk, ok := decoders[t]
	if !ok {
		return t, nil, fmt.Errorf("%w: unknown type %d", ErrBadCommand, data[0])
	}
	if err := mpcheck.Check(data[1:]); err != nil {
		return t, nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, t, err)
	}
	if t == CmdPublish {
		p, err := decodePublish(data[1:])
		if err != nil {
			return t, nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, t, err)
		}
		return t, p, nil
	}
	c := mk()
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(data[1:]))
	if err := dec.Decode(c); err != nil {
		return t, nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, t, err)
	}
	switch c := c.(type) {
	case *Batch:
		c.decoded = make([]command, len(c.Commands))
		for i, raw := range c.Commands {
			if len(raw) > 0 && (CommandType(raw[0]) == CmdBatch || CommandType(raw[0]) == CmdOnce) {
				return t, nil, fmt.Errorf("%w: %s nested in a batch at item %d", ErrBadCommand, CommandType(raw[0]), i)
			}
			_, sub, err := Decode(raw)
			if err != nil {
				return t, nil, fmt.Errorf("batch item %d: %w", i, err)
			}
			c.decoded[i] = sub
		}
	case *Once:
		if len(c.Cmd) > 0 && CommandType(c.Cmd[0]) == CmdOnce {
			return t, nil, fmt.Errorf("%w: once nested in once", ErrBadCommand)
		}
		if c.Origin == "" {
			return t, nil, fmt.Errorf("%w: once without an origin", ErrBadCommand)
		}
		_, sub, err := Decode(c.Cmd)
		if err != nil {
			return t, nil, fmt.Errorf("once: %w", err)
		}
		c.decoded = sub
	}
	return t, c, nil
}
