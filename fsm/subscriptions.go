package fsm

import "fmt"

// The subscription commands and the two maps they keep: subscriptions by
// publisher and table (who to push to) and by subscriber (what to resume).

func (c *Subscribe) apply(s *state, _ uint64) any {
	if c.Publisher == "" || c.Table == "" {
		return fmt.Errorf("%w: publisher and table are required", ErrInvalid)
	}
	if _, ok := s.services[c.Subscriber]; !ok {
		return fmt.Errorf("%w: subscriber %q", ErrServiceNotFound, c.Subscriber)
	}
	s.addSub(Subscription(*c))
	return nil
}

func (s *state) addSub(sub Subscription) {
	tables, ok := s.subs[sub.Publisher]
	if !ok {
		tables = map[string]map[string]struct{}{}
		s.subs[sub.Publisher] = tables
	}
	set, ok := tables[sub.Table]
	if !ok {
		set = map[string]struct{}{}
		tables[sub.Table] = set
	}
	set[sub.Subscriber] = struct{}{}
	mine := s.bySub[sub.Subscriber]
	if mine == nil {
		mine = map[pubTable]struct{}{}
		s.bySub[sub.Subscriber] = mine
	}
	mine[pubTable{sub.Publisher, sub.Table}] = struct{}{}
}

func (c *Unsubscribe) apply(s *state, _ uint64) any {
	s.removeSub(Subscription(*c)) // idempotent, as Congress's unsubscribe
	return nil
}

// removeSub removes one subscription, if it is there.
func (s *state) removeSub(sub Subscription) {
	set := s.subs[sub.Publisher][sub.Table]
	if _, ok := set[sub.Subscriber]; !ok {
		return
	}
	delete(set, sub.Subscriber)
	if len(set) == 0 {
		delete(s.subs[sub.Publisher], sub.Table)
		if len(s.subs[sub.Publisher]) == 0 {
			delete(s.subs, sub.Publisher)
		}
	}
	mine := s.bySub[sub.Subscriber]
	delete(mine, pubTable{sub.Publisher, sub.Table})
	if len(mine) == 0 {
		delete(s.bySub, sub.Subscriber)
	}
}

// removeSubsTo removes every subscription to publisher's tables.
func (s *state) removeSubsTo(publisher string) {
	for t, set := range s.subs[publisher] {
		for sub := range set {
			s.removeSub(Subscription{Subscriber: sub, Publisher: publisher, Table: t})
		}
	}
}
