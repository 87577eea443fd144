package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
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

// ekmLabel names the TLS keying material the proofs are made over.
const ekmLabel = "EXPORTER-dse-cluster-key"

// The cluster-key handshake. The client sends ProtoAuth; then, unless the
// connection already runs mutual TLS, both sides start TLS 1.3 with a
// throwaway certificate (the key, not the certificate, authenticates: the
// client checks none). Each side then proves it holds the key with an
// HMAC-SHA256 of the session's exported keying material, which is unique
// to that TLS session: a proof cannot be replayed, reflected or relayed
// into another session, and a machine in the middle, holding two sessions,
// can pass neither side's proof to the other. Everything after runs inside
// TLS, encrypted and authenticated.

// keyProof is one side's proof for a session.
func keyProof(key []byte, role string, ekm []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(role))
	m.Write(ekm)
	return m.Sum(nil)
}

// sessionKeyMaterial returns the keying material of tc's session.
func sessionKeyMaterial(tc *tls.Conn) ([]byte, error) {
	cs := tc.ConnectionState()
	return cs.ExportKeyingMaterial(ekmLabel, nil, 32)
}

// throwawayTLS returns a server config with a new self-signed certificate,
// for the cluster key's TLS when no mutual TLS is configured.
func throwawayTLS() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "dse cluster-key session"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(100 * 365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// clientKeyHandshake runs the client's side on conn (its deadline set by
// the caller) and returns the connection to use: TLS, unless conn was.
func clientKeyHandshake(conn net.Conn, key []byte) (net.Conn, error) {
	if _, err := conn.Write([]byte{ProtoAuth}); err != nil {
		return nil, err
	}
	tc, ok := conn.(*tls.Conn)
	if !ok {
		// The peer checks the key, not a certificate.
		tc = tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err := tc.Handshake(); err != nil {
			return nil, refused(err)
		}
	}
	ekm, err := sessionKeyMaterial(tc)
	if err != nil {
		return nil, err
	}
	if _, err := tc.Write(keyProof(key, "client", ekm)); err != nil {
		return nil, err
	}
	proof := make([]byte, sha256.Size)
	if _, err := io.ReadFull(tc, proof); err != nil {
		return nil, refused(err)
	}
	if !hmac.Equal(proof, keyProof(key, "server", ekm)) {
		return nil, fmt.Errorf("%w: the peer holds another key", ErrClusterKey)
	}
	return tc, nil
}

// refused makes a peer's hang-up in the handshake a key mismatch (it has
// another key, or none); a timeout stays a timeout (slow, not refused).
func refused(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return fmt.Errorf("%w: the peer ended the handshake (it has another key, or none): %v", ErrClusterKey, err)
}

// serverKeyHandshake runs the server's side, after it read ProtoAuth,
// starting TLS with srv unless conn already runs it; it returns the
// connection to use.
func serverKeyHandshake(conn net.Conn, key []byte, srv *tls.Config, timeout time.Duration) (net.Conn, error) {
	conn.SetDeadline(time.Now().Add(timeout))
	tc, ok := conn.(*tls.Conn)
	if !ok {
		tc = tls.Server(conn, srv)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
	}
	ekm, err := sessionKeyMaterial(tc)
	if err != nil {
		return nil, err
	}
	proof := make([]byte, sha256.Size)
	if _, err := io.ReadFull(tc, proof); err != nil {
		return nil, err
	}
	if !hmac.Equal(proof, keyProof(key, "client", ekm)) {
		return nil, fmt.Errorf("%w: the peer holds another key", ErrClusterKey)
	}
	if _, err := tc.Write(keyProof(key, "server", ekm)); err != nil {
		return nil, err
	}
	return tc, nil
}
