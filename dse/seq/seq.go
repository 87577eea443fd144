package seq

import (
	"time"

	"dse.dev/dse/dse/table"
)

// Sequencer orders the publications of one table.
type Sequencer struct {
	last       uint64
	applied    bool // anything applied (a table's seed is a snapshot at 0)
	buf        map[uint64]*table.Publication
	maxBuf     int
	gapSince   time.Time
	staleSince time.Time
	out        []*table.Publication // Offer's result, reused

	// Counters, for metrics and tests.
	Duplicates int
	Overflows  int
}

// New returns a sequencer that buffers at most maxBuf early deltas.
func New(maxBuf int) *Sequencer {
	return &Sequencer{buf: map[uint64]*table.Publication{}, maxBuf: max(maxBuf, 1)}
}

// Last returns the seqnum of the last applied publication (0: none, or a
// seed).
func (s *Sequencer) Last() uint64 { return s.last }

// Applied reports whether anything was applied: a publication, or the seed
// of a table never published (a snapshot at seqnum 0, what the publisher's
// get_snapshot returns).
func (s *Sequencer) Applied() bool { return s.applied }

// Buffered returns the number of early deltas held.
func (s *Sequencer) Buffered() int { return len(s.buf) }

// Offer takes one arrived publication and returns those now to apply, in
// order. The slice is valid until the next call (its array is reused: one
// allocation fewer per publication); the caller clears it once done, so
// that the array does not keep the publications alive.
func (s *Sequencer) Offer(p *table.Publication, now time.Time) []*table.Publication {
	clear(s.out)
	out := s.out[:0]
	defer func() { s.out = out }()
	switch {
	case p.Snapshot && p.Seqnum == 0 && !s.applied:
		// A never-published table's seed: held until its first
		// publication, which is a snapshot.
		s.applied = true
		out = append(out, p)
		return out
	case p.Seqnum <= s.last:
		s.Duplicates++
		return nil
	case p.Snapshot:
		out = append(out, p)
		s.last = p.Seqnum
		for seq := range s.buf {
			if seq <= p.Seqnum {
				delete(s.buf, seq)
			}
		}
	case p.Seqnum == s.last+1:
		out = append(out, p)
		s.last = p.Seqnum
	default:
		if _, dup := s.buf[p.Seqnum]; dup {
			s.Duplicates++
		} else if len(s.buf) >= s.maxBuf {
			s.Overflows++ // recovered by the catch-up the gap triggers
		} else {
			s.buf[p.Seqnum] = p
		}
		if s.gapSince.IsZero() {
			s.gapSince = now
		}
		return nil
	}
	s.applied = true
	// Progress: a lag behind the registry starts over now (a subscriber
	// that keeps advancing, one publication behind at each check, has lost
	// nothing).
	if !s.staleSince.IsZero() {
		s.staleSince = now
	}
	for {
		next, ok := s.buf[s.last+1]
		if !ok {
			break
		}
		delete(s.buf, s.last+1)
		out = append(out, next)
		s.last = next.Seqnum
	}
	if len(s.buf) == 0 {
		s.gapSince = time.Time{}
	} else {
		s.gapSince = now // progress: a new gap starts now
	}
	return out
}

// NeedsCatchup reports whether the subscriber must catch up: a gap open, or
// the committed seqnum (from the FSM) ahead of the applied one, for at least
// timeout without progress (each publication applied restarts both).
func (s *Sequencer) NeedsCatchup(now time.Time, committed uint64, timeout time.Duration) bool {
	if committed > s.last {
		if s.staleSince.IsZero() {
			s.staleSince = now
		}
	} else {
		s.staleSince = time.Time{}
	}
	gap := !s.gapSince.IsZero() && now.Sub(s.gapSince) >= timeout
	stale := !s.staleSince.IsZero() && now.Sub(s.staleSince) >= timeout
	return gap || stale
}

// CatchupStarted restarts both timers, so one catch-up is not followed by
// another before it had a chance to land.
func (s *Sequencer) CatchupStarted(now time.Time) {
	if !s.gapSince.IsZero() {
		s.gapSince = now
	}
	if !s.staleSince.IsZero() {
		s.staleSince = now
	}
}
