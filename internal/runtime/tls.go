package runtime

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// keyPair serves a certificate from files and reloads it when they change,
// so certificates rotated on disk (cert-manager, Vault agents) take effect
// on the next handshake without a restart. A pair that fails to load (for
// example while the files are being replaced one by one) leaves the previous
// one in use.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
}

func loadKeyPair(certFile, keyFile string) (*keyPair, error) {
	k := &keyPair{certFile: certFile, keyFile: keyFile}
	certMod, keyMod, err := k.modTimes()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the key pair: %w", err)
	}
	k.cert, k.certMod, k.keyMod = &cert, certMod, keyMod
	return k, nil
}

func (k *keyPair) modTimes() (certMod, keyMod time.Time, err error) {
	ci, err := os.Stat(k.certFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("loading the key pair: %w", err)
	}
	ki, err := os.Stat(k.keyFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("loading the key pair: %w", err)
	}
	return ci.ModTime(), ki.ModTime(), nil
}

// current returns the certificate, reloading it first if a file changed.
// A stat per handshake is cheap next to the handshake itself.
func (k *keyPair) current() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	certMod, keyMod, err := k.modTimes()
	if err != nil || (certMod.Equal(k.certMod) && keyMod.Equal(k.keyMod)) {
		return k.cert
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return k.cert // mid-rotation; the next handshake tries again
	}
	k.cert, k.certMod, k.keyMod = &cert, certMod, keyMod
	return k.cert
}

// serverTLS builds the server side TLS config of c, or nil when c has no
// certificate. With a CA it requires and verifies client certificates (mTLS).
func serverTLS(c Config) (*tls.Config, error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		return nil, nil
	}
	pair, err := loadKeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pair.current(), nil
		},
	}
	if c.TLSCA != "" {
		pool, err := loadCA(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// clientTLS builds the client side TLS config of c, or nil when c asks for
// no TLS.
func clientTLS(c ClientConfig) (*tls.Config, error) {
	if !c.tlsEnabled() {
		return nil, nil
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, fmt.Errorf("client TLS: the certificate and key go together: set both or neither")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.TLSCA != "" {
		pool, err := loadCA(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("client TLS CA: %w", err)
		}
		cfg.RootCAs = pool
	}
	if c.TLSCert != "" {
		pair, err := loadKeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("client TLS: %w", err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return pair.current(), nil
		}
	}
	return cfg, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
