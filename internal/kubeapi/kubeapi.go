// Package kubeapi runs a real Kubernetes API server: etcd and
// kube-apiserver on loopback (free ports, a temporary directory each), with
// static bearer tokens for an admin and for a fixed number of users, RBAC
// authorization and the default admission plugins, for tests (through
// internal/kubetest) and for `dtkbot demo`.
//
// No controller manager and no kubelet run: nothing creates pods for Jobs,
// nothing garbage-collects, no namespace is ever finalized. Whoever needs a
// node plays it through the API (internal/kubenode), with Kubelet serving
// the pods' logs.
//
// The binaries come from KUBEBUILDER_ASSETS (controller-runtime envtest's
// convention: $KUBEBUILDER_ASSETS/kube-apiserver and .../etcd), else from
// the cache `make kube-assets` fills. It never downloads anything.
package kubeapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// Version is the Kubernetes version `make kube-assets` provides.
const Version = "v1.34.2"

// ReadyDeadline bounds the wait for /readyz: generous, the machine may be
// shared and slow; the wait ends as soon as the server is ready.
const ReadyDeadline = 3 * time.Minute

// Users is how many users besides the admin the token file holds (tokens
// are read once, at start): user-1 ... user-<Users>, with no group and so
// no permission until a RoleBinding gives them one.
const Users = 64

// Server is one running etcd and kube-apiserver.
type Server struct {
	// Admin is a config for a member of system:masters (every verb on
	// every resource, RBAC or not).
	Admin *rest.Config
	// Host is the API server's URL.
	Host string
	// Started is how long the start took, until /readyz answered ok.
	Started time.Duration
	// CA is the PEM certificate the server (and every Kubelet) serves with.
	CA []byte

	dir             string
	etcd, apiserver *process
	serving         tls.Certificate
	tokens          []string
}

// Assets returns the directory holding kube-apiserver and etcd, or an error
// saying how to get them.
func Assets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		cache := os.Getenv("DTKBOT_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "dtkbot")
		}
		dir = filepath.Join(cache, "kube-"+Version)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("no %s in %s: run `make kube-assets` (it prints the directory; export KUBEBUILDER_ASSETS to it)", b, dir)
		}
	}
	return dir, nil
}

// Kubeconfig is a kubeconfig file's content for the admin (its token
// inline: write it to a file of mode 0600), with namespace as its
// context's namespace.
func (s *Server) Kubeconfig(namespace string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: kubeapi
    cluster: {server: %s, certificate-authority-data: %s}
users:
  - name: admin
    user: {token: %s}
contexts:
  - name: kubeapi
    context: {cluster: kubeapi, user: admin, namespace: %s}
current-context: kubeapi
`, s.Host, base64.StdEncoding.EncodeToString(s.CA), s.tokens[0], namespace))
}

// UserToken is the bearer token of user-<i> (1 ≤ i ≤ Users).
func (s *Server) UserToken(i int) string { return s.tokens[i] }

// UserName is the name user-<i> authenticates as.
func UserName(i int) string { return "user-" + strconv.Itoa(i) }

// Start runs etcd and kube-apiserver from the binaries in assets and waits
// until the server is ready. Stop it with Stop.
func Start(assets string) (s *Server, err error) {
	began := time.Now()
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("making the server's directory: %w", err)
	}
	s = &Server{dir: dir}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s.etcd, err = run(filepath.Join(assets, "etcd"), filepath.Join(dir, "etcd.log"),
		"--name", "kubetest", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "kubetest="+peerURL, "--log-level", "warn")
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	if err := s.writeFiles(); err != nil {
		return nil, err
	}
	s.Host = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	s.apiserver, err = run(filepath.Join(assets, "kube-apiserver"), filepath.Join(dir, "kube-apiserver.log"),
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[2]),
		"--tls-cert-file", filepath.Join(dir, "serving.crt"), "--tls-private-key-file", filepath.Join(dir, "serving.key"),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		// No controller manager runs to keep the kubernetes Service's
		// endpoints, and the loopback address would not do for them.
		"--endpoint-reconciler-type", "none",
		// Kubelets (Kubelet's stand-ins) serve with the same certificate.
		"--kubelet-certificate-authority", filepath.Join(dir, "serving.crt"),
		"--kubelet-preferred-address-types", "InternalIP",
		"--allow-privileged=true")
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver: %w", err)
	}
	s.Admin = &rest.Config{
		Host:            s.Host,
		BearerToken:     s.tokens[0],
		TLSClientConfig: rest.TLSClientConfig{CAData: s.CA},
		Timeout:         30 * time.Second,
		QPS:             100, Burst: 200,
	}
	if err := s.waitReady(); err != nil {
		return nil, err
	}
	s.Started = time.Since(began)
	return s, nil
}

// writeFiles writes the serving certificate, the service-account key and
// the token file.
func (s *Server) writeFiles() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubetest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("making the serving certificate: %w", err)
	}
	s.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if s.serving, err = tls.X509KeyPair(s.CA, keyPEM); err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	// token,user,uid,"group,..." (the --token-auth-file format).
	var csv strings.Builder
	for i := 0; i <= Users; i++ {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		tok := hex.EncodeToString(b)
		s.tokens = append(s.tokens, tok)
		if i == 0 {
			fmt.Fprintf(&csv, "%s,admin,admin,\"system:masters\"\n", tok)
		} else {
			fmt.Fprintf(&csv, "%s,user-%d,user-%d\n", tok, i, i)
		}
	}
	for name, data := range map[string][]byte{
		"serving.crt": s.CA, "serving.key": keyPEM,
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"tokens.csv": []byte(csv.String()),
	} {
		if err := os.WriteFile(filepath.Join(s.dir, name), data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

// waitReady polls /readyz until it answers 200, the deadline passes or a
// process exits.
func (s *Server) waitReady() error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CA)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(ReadyDeadline)
	last := "no answer yet"
	for time.Now().Before(deadline) {
		for _, p := range []*process{s.etcd, s.apiserver} {
			if err := p.exited(); err != nil {
				return fmt.Errorf("%s exited before the server was ready: %v; its log ends: %s", filepath.Base(p.cmd.Path), err, p.logTail())
			}
		}
		req, _ := http.NewRequest(http.MethodGet, s.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+s.tokens[0])
		resp, err := client.Do(req)
		if err == nil {
			body := make([]byte, 4096)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body[:n]))
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond) // a polling interval, not a wait for an outcome
	}
	return fmt.Errorf("kube-apiserver not ready within %s (last: %s); its log ends: %s", ReadyDeadline, last, s.apiserver.logTail())
}

// Stop stops kube-apiserver, then etcd, and removes their files.
func (s *Server) Stop() error {
	var errs []error
	for _, p := range []*process{s.apiserver, s.etcd} {
		if p != nil {
			if err := p.stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Namespace creates namespace name with the default ServiceAccount the
// controller manager would have made (the ServiceAccount admission plugin
// wants it for pods).
func (s *Server) Namespace(ctx context.Context, name string) error {
	core, err := corev1client.NewForConfig(s.Admin)
	if err != nil {
		return err
	}
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	if _, err := core.ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the default service account of %s: %w", name, err)
	}
	return nil
}

// freePorts finds n loopback ports nobody listens on (a port can be taken
// again before the server binds it; a start then fails and says so).
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// process is a child process with its log in a file.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func run(path, log string, args ...string) (*process, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Killed with the test binary even if it dies before Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited is the exit error once the process has ended (nil while it runs).
func (p *process) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return errors.New("exit status 0")
		}
		return p.err
	default:
		return nil
	}
}

// stop sends SIGTERM and waits; a process still there after a minute is
// killed.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(time.Minute):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within a minute of SIGTERM; killed", filepath.Base(p.cmd.Path))
	}
}

func (p *process) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// Logs answers a kubelet's containerLogs request: the log of one container,
// whole (Kubelet applies tailLines and limitBytes).
type Logs func(namespace, pod, container string) (string, bool)

// Kubelet registers a Node named name whose kubelet is a loopback server
// answering the API server's log requests (GET
// /containerLogs/{namespace}/{pod}/{container}, what `kubectl logs` and
// the pods/log subresource proxy to) from logs. It never runs anything:
// pods bound to the node are whatever its caller says they are. stop
// deletes the Node and stops the server.
func (s *Server) Kubelet(ctx context.Context, name string, logs Logs) (stop func(), err error) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/containerLogs/") || len(parts) != 3 {
			http.NotFound(w, r)
			return
		}
		log, ok := logs(parts[0], parts[1], parts[2])
		if !ok {
			http.Error(w, "container not found", http.StatusNotFound)
			return
		}
		log = tailLog(log, r.URL.Query())
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, log)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{s.serving}}
	srv.StartTLS()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	core, err := corev1client.NewForConfig(s.Admin)
	if err != nil {
		srv.Close()
		return nil, err
	}
	node, err := core.Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("creating node %s: %w", name, err)
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = core.Nodes().Delete(ctx, name, metav1.DeleteOptions{})
		srv.Close()
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	if _, err := core.Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		stop()
		return nil, fmt.Errorf("writing the status of node %s: %w", name, err)
	}
	return stop, nil
}

// tailLog applies the kubelet's tailLines and limitBytes.
func tailLog(log string, q url.Values) string {
	if n, err := strconv.Atoi(q.Get("tailLines")); err == nil && n >= 0 {
		lines := strings.SplitAfter(log, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		log = strings.Join(lines, "")
	}
	if n, err := strconv.Atoi(q.Get("limitBytes")); err == nil && n >= 0 && len(log) > n {
		log = log[:n]
	}
	return log
}
