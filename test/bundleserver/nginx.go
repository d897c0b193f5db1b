//go:build integration

package bundleserver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"governor.dev/governor/test/testkeys"
)

// StartNginx serves the directory root with Debian's nginx on a free
// loopback port and returns its base URL (without a trailing slash). nginx
// sends ETags (derived from mtime and size, so a rewritten file needs a new
// mtime to get a new one) and answers If-None-Match with 304; it knows
// nothing of long polling. nginx is killed at t.Cleanup. The test fails,
// never skips, when nginx is missing.
func StartNginx(t testing.TB, root string) string {
	t.Helper()
	return startNginx(t, root, "", "")
}

// StartNginxTLS is StartNginx over HTTPS, with a certificate for 127.0.0.1
// from a CA of its own; it also returns the path of a file holding the CA's
// certificate (PEM), for an OPA service's tls.ca_cert.
func StartNginxTLS(t testing.TB, root string) (url, caCert string) {
	t.Helper()
	ca := testkeys.NewCA(t, "nginx-ca")
	server := ca.Server(t, "nginx")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caCert = write("ca.pem", ca.CertPEM)
	return startNginx(t, root, write("server.pem", server.CertPEM), write("server-key.pem", server.KeyPEM)), caCert
}

// startNginx serves root, over HTTPS when cert and key are given.
func startNginx(t testing.TB, root, cert, key string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		// /usr/sbin is not in every PATH.
		if _, e := os.Stat("/usr/sbin/nginx"); e != nil {
			t.Fatal("nginx not found (neither on PATH nor /usr/sbin/nginx): install Debian's package nginx (apt-get install -y nginx, or make test-servers)")
		}
		bin = "/usr/sbin/nginx"
	}
	root, err = filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	// Racy (another process may take the port before nginx), but nginx
	// cannot report the port it picked.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	scheme, listen := "http", addr
	if cert != "" {
		scheme, listen = "https", fmt.Sprintf("%s ssl; ssl_certificate %s; ssl_certificate_key %s", addr, cert, key)
	}
	dir := t.TempDir()
	// master_process off keeps a single process to kill; every path nginx
	// would write under /var is moved into dir so that it runs unprivileged.
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server { listen %[2]s; root %[3]s; etag on; }
}
`, dir, listen, root)
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// -e: the compiled-in error log (/var/log/nginx) is opened before the
	// configuration is read.
	cmd := exec.Command(bin, "-e", filepath.Join(dir, "error.log"), "-c", cfg, "-p", dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// Kill fails only when nginx has exited already; either way Wait
		// returns, and its error (the signal) matters to nobody now.
		_ = cmd.Process.Kill()
		<-exited //nolint:errcheck // killed: the error is the signal
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close() // only a probe: nothing was sent
			return scheme + "://" + addr
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited before listening on %s (%v); error.log:\n%s", addr, err, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not listen on %s within 5s; error.log:\n%s", addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
