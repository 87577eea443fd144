package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ProtoAuth opens a connection to a transport with a cluster key: before
// its protocol byte, each side proves it holds the key (keyHandshake).
const ProtoAuth byte = 'K'

// MinClusterKey is the shortest cluster key accepted, in bytes.
const MinClusterKey = 16

// ErrClusterKey is returned when a peer does not prove it holds the cluster
// key (or holds another), or when one side has a key and the other none.
var ErrClusterKey = errors.New("cluster key mismatch")

const nonceSize = 32

// keyMAC is the proof of one side: HMAC-SHA256 over its role and both
// nonces, so that neither a proof nor a reflected one can be replayed.
func keyMAC(key []byte, role string, client, server []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(role))
	m.Write(client)
	m.Write(server)
	return m.Sum(nil)
}

// clientKeyHandshake proves the key to a server and checks its proof: the
// client sends ProtoAuth and a nonce; the server answers its nonce and its
// proof; the client sends its proof. The caller has set a deadline.
func clientKeyHandshake(conn net.Conn, key []byte) error {
	cn := make([]byte, 1+nonceSize)
	cn[0] = ProtoAuth
	if _, err := rand.Read(cn[1:]); err != nil {
		return err
	}
	if _, err := conn.Write(cn); err != nil {
		return err
	}
	var reply [nonceSize + sha256.Size]byte
	if _, err := io.ReadFull(conn, reply[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return err // slow, not refused: may be tried again
		}
		return fmt.Errorf("%w: the peer closed the handshake (it has another key, or none): %v", ErrClusterKey, err)
	}
	sn := reply[:nonceSize]
	if !hmac.Equal(reply[nonceSize:], keyMAC(key, "server", cn[1:], sn)) {
		return fmt.Errorf("%w: the peer holds another key", ErrClusterKey)
	}
	_, err := conn.Write(keyMAC(key, "client", cn[1:], sn))
	return err
}

// serverKeyHandshake is the server's side, after it read ProtoAuth.
func serverKeyHandshake(conn net.Conn, key []byte, timeout time.Duration) error {
	conn.SetDeadline(time.Now().Add(timeout))
	cn := make([]byte, nonceSize)
	if _, err := io.ReadFull(conn, cn); err != nil {
		return err
	}
	out := make([]byte, nonceSize, nonceSize+sha256.Size)
	if _, err := rand.Read(out); err != nil {
		return err
	}
	sn := out[:nonceSize:nonceSize]
	if _, err := conn.Write(append(out, keyMAC(key, "server", cn, sn)...)); err != nil {
		return err
	}
	proof := make([]byte, sha256.Size)
	if _, err := io.ReadFull(conn, proof); err != nil {
		return err
	}
	if !hmac.Equal(proof, keyMAC(key, "client", cn, sn)) {
		return fmt.Errorf("%w: the peer holds another key", ErrClusterKey)
	}
	return nil
}
