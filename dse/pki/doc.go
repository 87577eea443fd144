// Package pki makes and loads the certificates of a dse cluster: a cluster CA
// (`dse tls init`), node certificates signed by it, valid as server and
// client (`dse tls cert`), and the tls.Configs for mutual TLS between nodes
// and HTTPS for clients. It uses crypto/x509 only. Certificates are read
// from disk again when their files change, so a node's certificate can be
// rotated by replacing its files (and, to be sure, restarting the node).
package pki
