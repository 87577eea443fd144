package dse

import (
	"fmt"
	"sync"
)

// localServices are the services running on this node, by id.
type localServices struct {
	mu   sync.RWMutex
	byID map[string]*DataService
}

func (l *localServices) add(node string, s *DataService) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.byID[s.id]; ok {
		return fmt.Errorf("%w: %q is already running on node %q", ErrServiceExists, s.id, node)
	}
	l.byID[s.id] = s
	return nil
}

func (l *localServices) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byID, id)
}

func (l *localServices) all() []*DataService {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]*DataService, 0, len(l.byID))
	for _, s := range l.byID {
		out = append(out, s)
	}
	return out
}

func (l *localServices) get(id string) (*DataService, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	s, ok := l.byID[id]
	return s, ok
}

// Service returns the service with id running on this node.
func (n *Node) Service(id string) (*DataService, bool) { return n.local.get(id) }
