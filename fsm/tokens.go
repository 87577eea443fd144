package fsm

import "fmt"

// The token commands. The registry keeps a token's SHA-256, never its
// secret.

func (c *TokenCreate) apply(s *state, _ uint64) any {
	t := c.Token
	switch t.Role {
	case "read", "write", "admin":
	default:
		return fmt.Errorf("%w: role %q is not read, write or admin", ErrInvalid, t.Role)
	}
	if t.ID == "" || len(t.Hash) != 64 {
		return fmt.Errorf("%w: token id and hash are required", ErrInvalid)
	}
	if _, ok := s.tokens[t.ID]; ok {
		return fmt.Errorf("%w: token id %q exists", ErrInvalid, t.ID)
	}
	for _, o := range s.tokens {
		if o.Hash == t.Hash {
			// Two tokens of one secret: revoking one by id would leave
			// the secret working (a retried create whose first attempt
			// committed late made them).
			return fmt.Errorf("%w: a token with that secret exists", ErrInvalid)
		}
	}
	if t.Role != "admin" && s.admins() == 0 {
		// The first token turns authentication on: a read or write one
		// would leave nobody able to administer the cluster.
		return fmt.Errorf("%w: the cluster has no admin token: create an admin token first", ErrInvalid)
	}
	s.tokens[t.ID] = &t
	return nil
}

// admins counts the admin tokens.
func (s *state) admins() int {
	n := 0
	for _, t := range s.tokens {
		if t.Role == "admin" {
			n++
		}
	}
	return n
}

func (c *TokenRevoke) apply(s *state, _ uint64) any {
	t, ok := s.tokens[c.ID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrTokenNotFound, c.ID)
	}
	if t.Role == "admin" && s.admins() == 1 && len(s.tokens) > 1 {
		return fmt.Errorf("%w: %q is the last admin token; create another admin token first", ErrInvalid, c.ID)
	}
	delete(s.tokens, c.ID)
	return nil
}
