package dse

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"dse.dev/dse/fsm"
)

// Roles, from least to most allowed: read (list, get, watch, status), write
// (also publish, rpc, services, datasources), admin (also membership, tokens,
// showing secrets).
const (
	RoleRead  = "read"
	RoleWrite = "write"
	RoleAdmin = "admin"
)

var roleRank = map[string]int{RoleRead: 1, RoleWrite: 2, RoleAdmin: 3}

// ValidRole reports whether r is a role.
func ValidRole(r string) bool { return roleRank[r] > 0 }

// RoleAllows reports whether a token of role have may do what needs need.
func RoleAllows(have, need string) bool { return roleRank[have] >= roleRank[need] }

// NewToken is a token as created: the secret is shown this once.
type NewToken struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Role  string `json:"role"`
	Token string `json:"token"`
}

// TokenInfo is a token as listed (no secret).
type TokenInfo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// authMarker, in the data dir, records that this node has seen the cluster
// require tokens: from then on it never serves an unauthenticated request,
// even while its registry copy (restarted from an old snapshot, say) does
// not hold the tokens yet.
const authMarker = "auth-required"

// AuthRequired reports whether every API request must carry a token: the
// cluster holds tokens, or it ever did; the node runs with TLS, or was
// given the cluster's first token (both get one before anything else can
// be done); or it joins with a token and has not caught up yet (its
// registry may not hold the cluster's tokens yet: it would have let
// anyone in).
func (n *Node) AuthRequired() bool {
	if n.authSeen.Load() {
		return true
	}
	if n.fsm.AuthEnabled() {
		n.noteAuth()
		return true
	}
	return n.cfg.Secure || n.cfg.BootstrapToken != "" || n.joinsFresh && !n.cluster.CaughtUp()
}

// AuthReady reports whether this node can check tokens: it holds them and
// has caught up with the leader since it started.
func (n *Node) AuthReady() bool { return n.fsm.AuthEnabled() && n.cluster.CaughtUp() }

func (n *Node) noteAuth() {
	if n.authSeen.Swap(true) {
		return
	}
	n.warnPlainClusterPort()
	if err := os.WriteFile(filepath.Join(n.cfg.DataDir, authMarker), []byte("tokens required\n"), 0o600); err != nil {
		n.logger.Error("cannot record that tokens are required", "error", err)
	}
}

// warnPlainClusterPort warns, once, that tokens guard only the HTTP API of
// a node with neither TLS nor a cluster key: its cluster port takes any
// peer's commands.
func (n *Node) warnPlainClusterPort() {
	if n.deps.ClusterTLS != nil || n.cfg.ClusterKey != nil {
		return
	}
	n.plainWarning.Do(func() {
		n.logger.Warn("tokens guard the HTTP API only: without TLS (--tls-cert, --tls-key, --tls-ca) or a cluster key (--cluster-key) the cluster port takes commands from anyone who can reach it", "cluster", n.cfg.Bind)
	})
}

// noteAuthOnceSynced records, once the node has caught up with the
// leader, that the cluster requires tokens if its registry holds any.
func (n *Node) noteAuthOnceSynced() {
	select {
	case <-n.ctx.Done():
	case <-n.cluster.Synced():
		if n.fsm.AuthEnabled() {
			n.noteAuth()
		}
	}
}

// Authenticate returns the token whose secret is presented.
func (n *Node) Authenticate(secret string) (TokenInfo, error) {
	if secret == "" {
		return TokenInfo{}, fmt.Errorf("%w: no token", ErrUnauthorized)
	}
	t, ok := n.fsm.TokenByHash(hashSecret(secret))
	if !ok {
		return TokenInfo{}, fmt.Errorf("%w: unknown or revoked token", ErrUnauthorized)
	}
	return TokenInfo{ID: t.ID, Name: t.Name, Role: t.Role}, nil
}

// TokenValid reports whether the token with id still exists (not revoked).
func (n *Node) TokenValid(id string) bool { return n.fsm.TokenExists(id) }

// CreateToken makes a token with a role; its secret is returned only here
// and stored only hashed.
func (n *Node) CreateToken(ctx context.Context, name, role string) (NewToken, error) {
	return n.createToken(ctx, name, role, "dse_"+randomHex(24))
}

func (n *Node) createToken(ctx context.Context, name, role, secret string) (NewToken, error) {
	if !ValidRole(role) {
		return NewToken{}, fmt.Errorf("%w: role %q is not read, write or admin", ErrInvalid, role)
	}
	if len(name) > 128 {
		return NewToken{}, fmt.Errorf("%w: token name longer than 128 bytes", ErrInvalid)
	}
	if len(secret) < 16 {
		return NewToken{}, fmt.Errorf("%w: a token must be at least 16 characters", ErrInvalid)
	}
	if _, ok := n.fsm.TokenByHash(hashSecret(secret)); ok {
		return NewToken{}, fmt.Errorf("%w: that token secret is already in use", ErrExists)
	}
	t := fsm.Token{ID: randomHex(8), Name: name, Role: role, Hash: hashSecret(secret)}
	if err := n.applyErr(ctx, fsm.CmdTokenCreate, fsm.TokenCreate{Token: t}); err != nil {
		return NewToken{}, err
	}
	n.logger.Info("token created", "id", t.ID, "name", name, "role", role)
	return NewToken{ID: t.ID, Name: name, Role: role, Token: secret}, nil
}

// Tokens lists the tokens (no secrets).
func (n *Node) Tokens() []TokenInfo {
	out := []TokenInfo{}
	for _, t := range n.fsm.Tokens() {
		out = append(out, TokenInfo{ID: t.ID, Name: t.Name, Role: t.Role})
	}
	return out
}

// RevokeToken deletes a token; requests carrying it are refused from then on.
func (n *Node) RevokeToken(ctx context.Context, id string) error {
	admins, target := 0, ""
	for _, t := range n.fsm.Tokens() {
		if t.Role == RoleAdmin {
			admins++
		}
		if t.ID == id {
			target = t.Role
		}
	}
	if target == RoleAdmin && admins == 1 {
		return fmt.Errorf("%w: %q is the last admin token; create another admin token first", ErrInvalid, id)
	}
	if err := n.applyErr(ctx, fsm.CmdTokenRevoke, fsm.TokenRevoke{ID: id}); err != nil {
		return err
	}
	n.logger.Info("token revoked", "id", id)
	return nil
}

// createBootstrapToken gives a secure cluster its first admin token
// (BootstrapToken, or a generated one handed to OnBootstrapToken) if the
// cluster has none: the bootstrap node creates it through the leader, also
// after a crash that came between bootstrapping and creating it, and as a
// follower (restarted with a token on an open cluster).
func (n *Node) createBootstrapToken() {
	secret := n.cfg.BootstrapToken
	generated := secret == ""
	if generated {
		secret = "dse_" + randomHex(24)
	}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		if n.fsm.AuthEnabled() {
			if n.cluster.CaughtUp() {
				_, ours := n.fsm.TokenByHash(hashSecret(secret))
				switch {
				case ours && generated && n.deps.OnBootstrapToken != nil:
					// An attempt that failed after its entry committed
					// (a timeout, a leader change): it is the token.
					n.deps.OnBootstrapToken(secret)
				case !ours && !generated:
					n.logger.Warn("the cluster already holds tokens, and not the --bootstrap-token given: it was not added")
				}
			}
			return
		}
		if !n.cluster.CaughtUp() {
			continue // the registry may hold tokens this node has not seen
		}
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		_, err := n.createToken(ctx, "bootstrap", RoleAdmin, secret)
		cancel()
		if err != nil {
			n.logger.Warn("bootstrap token not created yet, retrying", "error", err)
			continue
		}
		if generated && n.deps.OnBootstrapToken != nil {
			n.deps.OnBootstrapToken(secret)
		}
		return
	}
}
