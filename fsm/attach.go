package fsm

import (
	"fmt"
	"slices"
)

// Attachments: a process outside Go serves RPC actions of an external
// service through a long-lived stream it holds open on one node (`dse serve`,
// the Python client). The registry records each stream (its node and
// session id) with the actions it serves, on the service's record, so that
// every node routes calls of those actions to the nodes holding such
// streams, and lists them in the service's endpoints.

// Bounds on what one service's attachments may hold. They keep a record,
// which every node copies on each read, small.
const (
	MaxAttachActions = 64   // actions one attachment serves
	MaxAttachments   = 256  // attachments of one service at once
	MaxServedActions = 1024 // actions a service remembers having been served
	maxAttachName    = 128  // bytes of a session id or an action name
)

// The attachment commands (see commands.go: values are part of the log
// format).
const (
	CmdServiceAttach CommandType = 20
	CmdServiceDetach CommandType = 21
)

// kindExternal is the kind dse gives services created through the API
// (dse.KindExternal): the only kind a process may attach to.
const kindExternal = "external"

// Attachment is one stream through which a process serves actions of a
// service: on Node, under Session (unique cluster-wide), Actions sorted.
type Attachment struct {
	Node    string   `msgpack:"node"`
	Session string   `msgpack:"session"`
	Actions []string `msgpack:"actions"`
}

// ServiceAttach records an attachment to an external service. Attaching a
// session already recorded replaces its actions.
type ServiceAttach struct {
	Service string   `msgpack:"service"`
	Node    string   `msgpack:"node"`
	Session string   `msgpack:"session"`
	Actions []string `msgpack:"actions"`
}

// ServiceDetach removes one attachment (its stream closed). Detaching a
// session the service does not have is not an error: the stream's node and
// the node's sweep of stale sessions may both send it.
type ServiceDetach struct {
	Service string `msgpack:"service"`
	Node    string `msgpack:"node"`
	Session string `msgpack:"session"`
}

func (c *ServiceAttach) apply(s *state, _ uint64) any {
	if c.Service == "" || c.Node == "" || c.Session == "" || len(c.Session) > maxAttachName {
		return fmt.Errorf("%w: attach needs a service, a node and a session id of 1-%d bytes", ErrInvalid, maxAttachName)
	}
	actions := sortedUnique(c.Actions)
	if len(actions) == 0 || len(actions) > MaxAttachActions {
		return fmt.Errorf("%w: attach needs 1 to %d actions, got %d", ErrInvalid, MaxAttachActions, len(actions))
	}
	for _, a := range actions {
		if a == "" || len(a) > maxAttachName {
			return fmt.Errorf("%w: action names are 1-%d bytes", ErrInvalid, maxAttachName)
		}
	}
	svc, ok := s.services[c.Service]
	if !ok {
		return fmt.Errorf("%w: %q", ErrServiceNotFound, c.Service)
	}
	if svc.Kind != kindExternal {
		return fmt.Errorf("%w: service %q is of kind %q: only external services (`dse services create`) can be served from outside", ErrInvalid, c.Service, svc.Kind)
	}
	if _, ok := s.nodes[c.Node]; !ok {
		return fmt.Errorf("%w: %q", ErrNodeNotFound, c.Node)
	}
	i := slices.IndexFunc(svc.Attached, func(a Attachment) bool { return a.Session == c.Session })
	if i < 0 && len(svc.Attached) >= MaxAttachments {
		return fmt.Errorf("%w: service %q has %d attachments, the limit", ErrInvalid, c.Service, MaxAttachments)
	}
	served := sortedUnique(append(slices.Clone(svc.Served), actions...))
	if len(served) > MaxServedActions {
		return fmt.Errorf("%w: service %q would serve %d actions, over the limit %d", ErrInvalid, c.Service, len(served), MaxServedActions)
	}
	if i >= 0 && svc.Attached[i].Node != c.Node {
		return fmt.Errorf("%w: session %q is attached through node %q, not %q", ErrInvalid, c.Session, svc.Attached[i].Node, c.Node)
	}
	att := Attachment{Node: c.Node, Session: c.Session, Actions: actions}
	if i >= 0 {
		svc.Attached[i] = att
	} else {
		svc.Attached = append(svc.Attached, att)
		slices.SortFunc(svc.Attached, compareAttachments)
	}
	svc.Served = served
	return nil
}

func (c *ServiceDetach) apply(s *state, _ uint64) any {
	if c.Service == "" || c.Session == "" {
		return fmt.Errorf("%w: detach needs a service and a session id", ErrInvalid)
	}
	svc, ok := s.services[c.Service]
	if !ok {
		return fmt.Errorf("%w: %q", ErrServiceNotFound, c.Service)
	}
	svc.Attached = slices.DeleteFunc(svc.Attached, func(a Attachment) bool {
		return a.Session == c.Session && (c.Node == "" || a.Node == c.Node)
	})
	if len(svc.Attached) == 0 {
		svc.Attached = nil
	}
	return nil
}

// detachNode drops every attachment held through node (it left the
// cluster: its streams went with it).
func (s *state) detachNode(node string) {
	for _, id := range sortedKeys(s.services) {
		svc := s.services[id]
		svc.Attached = slices.DeleteFunc(svc.Attached, func(a Attachment) bool { return a.Node == node })
		if len(svc.Attached) == 0 {
			svc.Attached = nil
		}
	}
}

// compareAttachments orders attachments by node, then session.
func compareAttachments(a, b Attachment) int {
	if a.Node != b.Node {
		if a.Node < b.Node {
			return -1
		}
		return 1
	}
	switch {
	case a.Session < b.Session:
		return -1
	case a.Session > b.Session:
		return 1
	}
	return 0
}

func cloneAttachments(in []Attachment) []Attachment {
	if in == nil {
		return nil
	}
	out := make([]Attachment, len(in))
	for i, a := range in {
		out[i] = Attachment{Node: a.Node, Session: a.Session, Actions: slices.Clone(a.Actions)}
	}
	return out
}
