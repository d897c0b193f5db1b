// Package push is the endpoint through which managed systems report their own observations to
// a loop: a push collector's value is what was last posted for it.
//
//	POST /v1/loops/{namespace}/{name}/observations
//	Authorization: Bearer <token>
//	Content-Type: application/json
//
//	{"jitter": 2.4, "load": 0.7, "time": "2026-11-21T10:00:00.250Z"}
//
// The body is a JSON object of named numbers, and an optional "time" (RFC 3339; when it was
// observed, now by default, at most a minute ahead of the server's clock). Every name must be a
// push collector of the loop, and the bearer token must equal the "token" key of the Secret
// each of those collectors names in spec.collectors[].push.tokenSecret, in the loop's namespace.
//
// Everything is checked before anything is written; then one JSON merge patch of the loop's
// status.observations sets every value with its time. So the observations live in the API:
// every replica of the controller may accept them (the endpoint needs no leader), every replica
// and a restarted controller see them, and the loop's safety.staleAfter makes them stale when
// no new report comes. Values become Kubernetes quantities, exact to the nearest 1e-9 (their
// resolution) and to 17 significant digits (see Quantity); times are kept to the microsecond.
//
// Answers: 204 when written; otherwise a status and a one-line JSON reason, {"error": "..."}:
// 400 (not JSON, not an object, a value that is not a finite number, unknown names, a bad
// time), 401 (no bearer token; with WWW-Authenticate: Bearer), 403 (wrong token, no such loop,
// or a loop without push collectors: one answer for all three), 405 (not POST; with Allow:
// POST), 413 (body over the limit), 415 (not application/json), 429 (over a rate limit; with
// Retry-After), 503 (the API server is unreachable, overloaded or timed out: try again) and
// 500 (the API server refused in another way).
//
// Order of checks: the client's rate, method, bearer token present, content type, size and
// syntax of the body, the loop, the token against the Secrets, the loop's rate. A caller is
// authenticated when its token is that of one of the loop's push Secrets; any other caller
// gets the same 403, word for word, whether the loop exists or not, so it cannot tell which
// loops exist nor learn their collectors' names. An authenticated caller gets precise answers
// (which names are not push collectors, which collectors its token is not for).
//
// Abuse costs no API request: loops are read from the manager's cache, and tokens are checked
// against the SHA-256 of the Secrets' tokens kept in memory (each Secret read at most about
// once per half Limits.TokenTTL, whatever the request rate; see tokens). Rates are limited per
// client address before anything else, and per loop once the caller is authenticated (so a
// flood of bad tokens cannot use up a loop's rate).
//
// Nothing secret is logged: neither tokens nor Secret contents, nor the Authorization header.
package push

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
)

// +kubebuilder:rbac:groups=governor.dev,resources=controlloops,verbs=list;watch
// +kubebuilder:rbac:groups=governor.dev,resources=controlloops/status,verbs=patch
// Secrets are read one by one (get): the client must not cache them (the manager's client
// excludes them from its cache), or the controller would need to list and watch every Secret of
// the cluster, and hold them all in memory. Only the Secrets loops name are read, and only the
// hashes of their tokens kept, for a TTL (see tokens).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

const (
	// DefaultAddr is where Start listens when Options.Addr is empty.
	DefaultAddr = ":8082"
	// DefaultMaxBody bounds a request body when Options.MaxBody is 0.
	DefaultMaxBody int64 = 64 << 10
	// MaxFuture is how far ahead of the server's clock a reported time may be.
	MaxFuture = time.Minute
	// TokenKey is the key of the token in a push collector's Secret.
	TokenKey = "token"
	// Path is the route of the endpoint, as http.ServeMux patterns write it.
	Path = "/v1/loops/{namespace}/{name}/observations"

	// DefaultTokenTTL is Limits.TokenTTL when 0.
	DefaultTokenTTL = 30 * time.Second
	// DefaultLoopRate is governor run's default Limits.LoopRate. A loop ticks at most once per
	// spec.minInterval (50ms by default) and each authenticated push is a write to the API
	// server: 50 a second leaves room for several agents pushing to one loop.
	DefaultLoopRate = 50
	// DefaultClientRate is governor run's default Limits.ClientRate: one client (an agent, a
	// node's agents behind one address) may push to several loops.
	DefaultClientRate = 100

	// apiTimeout bounds the API requests of one push.
	apiTimeout = 10 * time.Second
	// timeFormat is how times are written to status.observations: RFC 3339 to the microsecond,
	// as metav1.MicroTime writes them (metav1.Time reads it back whole).
	timeFormat = "2006-01-02T15:04:05.000000Z07:00"
)

// Options configure a Server.
type Options struct {
	// Addr is the listen address of Start; DefaultAddr when empty.
	Addr string
	// MaxBody bounds a request body, in bytes; DefaultMaxBody when 0.
	MaxBody int64
	// Log receives one line per request (never a token); controller-runtime's logger, named
	// "push", when unset.
	Log logr.Logger
	// CertFile and KeyFile, both or neither, make the endpoint serve HTTPS with this PEM
	// certificate and key, read again when the files change (controller-runtime's
	// certwatcher: a rotated Secret mounted as files takes effect without a restart).
	CertFile, KeyFile string
	// Limits bound the requests accepted, and how long a token Secret read is trusted.
	Limits Limits
	// Namespaces, when set, are the only namespaces whose loops take pushes (those the
	// controller watches); a loop elsewhere gets the answer of one that does not exist.
	Namespaces []string
}

// Limits protect the endpoint and the API server behind it from floods.
type Limits struct {
	// LoopRate is how many authenticated pushes a second one loop accepts, in bursts of up to
	// twice as many; 0 is no limit.
	LoopRate float64
	// ClientRate is how many requests a second the endpoint accepts from one client address
	// (an IPv6 client's /64), whatever they are, in bursts of up to twice as many; 0 is no
	// limit. Behind a proxy every client has the proxy's address.
	ClientRate float64
	// TokenTTL is how long a token Secret read is trusted: a rotated or deleted token stops
	// working within it. DefaultTokenTTL when 0.
	TokenTTL time.Duration
}

// Server is the push endpoint. It is a controller-runtime manager.Runnable that every replica
// runs (it needs no leader election).
type Server struct {
	c       client.Client
	addr    string
	maxBody int64
	log     logr.Logger
	now     func() time.Time

	certFile, keyFile string
	// namespaces are those whose loops take pushes; all when empty.
	namespaces []string

	tokens         *tokens
	loops, clients *limiters

	mu    sync.Mutex
	bound string
}

// NewServer returns the push endpoint. c reads ControlLoops (from a cache is fine) and Secrets
// (uncached: see the RBAC markers) and patches the loops' status.
func NewServer(c client.Client, opts Options) *Server {
	s := &Server{c: c, addr: opts.Addr, maxBody: opts.MaxBody, log: opts.Log, now: time.Now,
		certFile: opts.CertFile, keyFile: opts.KeyFile, namespaces: opts.Namespaces}
	if s.addr == "" {
		s.addr = DefaultAddr
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBody
	}
	if s.log.GetSink() == nil {
		s.log = ctrl.Log.WithName("push")
	}
	ttl := opts.Limits.TokenTTL
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	now := func() time.Time { return s.now() }
	s.tokens = newTokens(s.readToken, ttl, now, s.log)
	s.loops, s.clients = newLimiters(opts.Limits.LoopRate, now), newLimiters(opts.Limits.ClientRate, now)
	return s
}

// NeedLeaderElection is false: every replica accepts observations (they are written to the API).
func (s *Server) NeedLeaderElection() bool { return false }

// Addr is the address Start listens on, once it does ("" before): with Options.Addr
// "127.0.0.1:0", the port it was given.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// Start serves the endpoint on Options.Addr until ctx ends, then shuts down gracefully (10 s at
// most for requests in flight). It returns nil after a shutdown, or why it could not serve.
func (s *Server) Start(ctx context.Context) error {
	var certs *certwatcher.CertWatcher
	if s.certFile != "" || s.keyFile != "" {
		if s.certFile == "" || s.keyFile == "" {
			return errors.New("push endpoint: TLS needs both a certificate and a key")
		}
		var err error
		if certs, err = certwatcher.New(s.certFile, s.keyFile); err != nil {
			return fmt.Errorf("push endpoint TLS: %w", err)
		}
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("push endpoint: %w", err)
	}
	scheme := "http"
	if certs != nil {
		go func() {
			if err := certs.Start(ctx); err != nil {
				s.log.Error(err, "watching the push endpoint's certificate")
			}
		}()
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate})
		scheme = "https"
	} else {
		s.log.Info("the push endpoint serves plain HTTP: bearer tokens cross the network in clear (give it a certificate and key for HTTPS)")
	}
	s.mu.Lock()
	s.bound = ln.Addr().String()
	s.mu.Unlock()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	s.log.Info("push endpoint listening", "addr", s.bound, "scheme", scheme, "path", Path)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("push endpoint: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) && serveErr != nil {
		return fmt.Errorf("push endpoint: %w", serveErr)
	}
	if err != nil {
		return fmt.Errorf("push endpoint: shutdown: %w", err)
	}
	return nil
}

// Handler is the endpoint's http.Handler: Path, and a JSON 404 for every other path, all
// behind the per-client rate limit, every answer counted by its code.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(Path, s.serve)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &httpError{code: http.StatusNotFound, msg: "no such endpoint: the only one is POST " + Path})
	})
	return counted(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wait, ok := s.clients.allow(clientKey(r.RemoteAddr)); !ok {
			writeError(w, tooMany(wait, "too many requests from this client address: at most %g a second", float64(s.clients.limit)))
			return
		}
		mux.ServeHTTP(w, r)
	}))
}

// tooMany is a 429 that says when to try again.
func tooMany(wait time.Duration, format string, args ...any) *httpError {
	after := retryAfterSeconds(wait)
	return &httpError{code: http.StatusTooManyRequests, msg: fmt.Sprintf(format, args...) + fmt.Sprintf(": retry after %ds", after),
		header: map[string]string{"Retry-After": strconv.Itoa(after)}}
}

// denied is the answer to a caller that is not authenticated for the loop it names, whether
// the loop exists or not: the same, word for word.
func denied() *httpError {
	return fail(http.StatusForbidden, "the token does not match: it must equal the token of the Secret of each push collector named (or there is no such loop)")
}

// httpError is a refusal: its status code, its one-line reason and headers to set.
type httpError struct {
	code   int
	msg    string
	header map[string]string
	// cause is logged, never sent.
	cause error
}

func fail(code int, format string, args ...any) *httpError {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, e *httpError) {
	for k, v := range e.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.code)
	b, _ := json.Marshal(map[string]string{"error": e.msg})
	_, _ = w.Write(append(b, '\n'))
}

// serve handles one POST of observations.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	key := types.NamespacedName{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	names, err := s.accept(r, key)
	log := s.log.WithValues("loop", key.String(), "remote", r.RemoteAddr)
	if err != nil {
		switch {
		case err.code >= 500:
			log.Error(err.cause, "observations not accepted", "status", err.code, "reason", err.msg)
		default:
			log.V(1).Info("observations refused", "status", err.code, "reason", err.msg)
		}
		writeError(w, err)
		return
	}
	log.V(1).Info("observations accepted", "names", names)
	w.WriteHeader(http.StatusNoContent)
}

// accept checks a request whole, then writes its observations; it returns the names written.
func (s *Server) accept(r *http.Request, key types.NamespacedName) ([]string, *httpError) {
	if r.Method != http.MethodPost {
		return nil, &httpError{code: http.StatusMethodNotAllowed, msg: fmt.Sprintf("method %s not allowed: POST observations", r.Method),
			header: map[string]string{"Allow": http.MethodPost}}
	}
	token, herr := bearerToken(r)
	if herr != nil {
		return nil, herr
	}
	if herr := jsonContentType(r); herr != nil {
		return nil, herr
	}
	body, herr := s.readBody(r)
	if herr != nil {
		return nil, herr
	}
	now := s.now()
	report, herr := parseReport(body, now)
	if herr != nil {
		return nil, herr
	}

	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	loop, herr := s.readLoop(ctx, key)
	if herr != nil {
		return nil, herr
	}
	secrets := pushSecrets(loop)
	if len(secrets) == 0 {
		return nil, denied()
	}
	var named, unknown []string
	for name := range report.values {
		if _, ok := secrets[name]; ok {
			named = append(named, name)
		} else {
			unknown = append(unknown, name)
		}
	}
	if herr := s.authorize(ctx, loop.Namespace, token, named, secrets); herr != nil {
		return nil, herr
	}
	if wait, ok := s.loops.allow(key.String()); !ok {
		return nil, tooMany(wait, "too many pushes to controlloop %s: at most %g a second", key, float64(s.loops.limit))
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fail(http.StatusBadRequest, "%s: not a push collector of controlloop %s (its push collectors: %s)",
			strings.Join(unknown, ", "), key, strings.Join(slices.Sorted(maps.Keys(secrets)), ", "))
	}
	if herr := s.write(ctx, loop, report); herr != nil {
		return nil, herr
	}
	return slices.Sorted(maps.Keys(report.values)), nil
}

// bearerToken is the token of the request's Authorization: Bearer header.
func bearerToken(r *http.Request) (string, *httpError) {
	unauthorized := func(msg string) *httpError {
		return &httpError{code: http.StatusUnauthorized, msg: msg,
			header: map[string]string{"WWW-Authenticate": `Bearer realm="governor"`}}
	}
	values := r.Header.Values("Authorization")
	switch {
	case len(values) == 0:
		return "", unauthorized("missing Authorization: Bearer token")
	case len(values) > 1:
		return "", unauthorized("more than one Authorization header")
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", unauthorized("malformed Authorization header: want Bearer and a token")
	}
	return token, nil
}

// jsonContentType refuses a body that is not declared JSON (application/json, or a
// +json type).
func jsonContentType(r *http.Request) *httpError {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return fail(http.StatusUnsupportedMediaType, "missing Content-Type: want application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	isJSON := mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
	if err != nil || !isJSON {
		return fail(http.StatusUnsupportedMediaType, "Content-Type %q: want application/json", ct)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return fail(http.StatusUnsupportedMediaType, "Content-Type %q: JSON is UTF-8", ct)
	}
	return nil
}

func (s *Server) readBody(r *http.Request) ([]byte, *httpError) {
	tooLarge := fail(http.StatusRequestEntityTooLarge, "body larger than %d bytes", s.maxBody)
	if r.ContentLength > s.maxBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.maxBody+1))
	if err != nil {
		return nil, fail(http.StatusBadRequest, "reading the body: %v", err)
	}
	if int64(len(body)) > s.maxBody {
		return nil, tooLarge
	}
	return body, nil
}

// report is a body, checked.
type report struct {
	values map[string]float64
	at     time.Time
}

// parseReport checks a body: one JSON object of named finite numbers, with an optional "time"
// (an RFC 3339 string; a number named "time" is a value like the others).
func parseReport(body []byte, now time.Time) (*report, *httpError) {
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		if len(bytes.TrimSpace(body)) == 0 {
			return nil, fail(http.StatusBadRequest, "not JSON: the body is empty")
		}
		return nil, fail(http.StatusBadRequest, "not JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, _ := dec.Token()
	if tok != json.Delim('{') {
		return nil, fail(http.StatusBadRequest, "not an object: want a JSON object of named numbers, got %s", kindOf(body))
	}
	rep := &report{values: map[string]float64{}, at: now}
	seen := map[string]bool{}
	var at string
	hasTime := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fail(http.StatusBadRequest, "not JSON: %v", err)
		}
		name := tok.(string) // json.Valid: object keys are strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fail(http.StatusBadRequest, "not JSON: %v", err)
		}
		if seen[name] {
			return nil, fail(http.StatusBadRequest, "%q appears twice", name)
		}
		seen[name] = true
		if name == "time" && len(raw) > 0 && raw[0] == '"' {
			if err := json.Unmarshal(raw, &at); err != nil {
				return nil, fail(http.StatusBadRequest, "time: %v", err)
			}
			hasTime = true
			continue
		}
		v, herr := number(name, raw)
		if herr != nil {
			return nil, herr
		}
		rep.values[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace; json.Valid: one value only
		return nil, fail(http.StatusBadRequest, "not JSON: %v", err)
	}
	if len(rep.values) == 0 {
		return nil, fail(http.StatusBadRequest, "no observations: the object names no values")
	}
	if hasTime {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return nil, fail(http.StatusBadRequest, "time %q: not RFC 3339 (e.g. 2026-11-21T10:00:00.25Z)", at)
		}
		if t.After(now.Add(MaxFuture)) {
			return nil, fail(http.StatusBadRequest, "time %s is more than %v ahead of the server's clock (%s)",
				at, MaxFuture, now.UTC().Format(time.RFC3339))
		}
		rep.at = t
	}
	return rep, nil
}

// number is a JSON value that must be a finite number.
func number(name string, raw json.RawMessage) (float64, *httpError) {
	switch raw[0] {
	case '"':
		return 0, fail(http.StatusBadRequest, "%s: a string, not a number", name)
	case 't', 'f':
		return 0, fail(http.StatusBadRequest, "%s: a boolean, not a number", name)
	case 'n':
		return 0, fail(http.StatusBadRequest, "%s: null, not a number", name)
	case '{':
		return 0, fail(http.StatusBadRequest, "%s: an object, not a number", name)
	case '[':
		return 0, fail(http.StatusBadRequest, "%s: an array, not a number", name)
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fail(http.StatusBadRequest, "%s: %s is not a finite number", name, raw)
	}
	return v, nil
}

// kindOf names the JSON value body holds.
func kindOf(body []byte) string {
	b := bytes.TrimSpace(body)
	switch b[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// readLoop reads the loop the request names; a loop that does not exist is denied.
func (s *Server) readLoop(ctx context.Context, key types.NamespacedName) (*v1alpha1.ControlLoop, *httpError) {
	if len(validation.IsDNS1123Label(key.Namespace)) > 0 || len(validation.IsDNS1123Subdomain(key.Name)) > 0 {
		return nil, denied()
	}
	if len(s.namespaces) > 0 && !slices.Contains(s.namespaces, key.Namespace) {
		return nil, denied() // not watched: the cache holds nothing there
	}
	loop := &v1alpha1.ControlLoop{}
	if err := s.c.Get(ctx, key, loop); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, denied()
		}
		return nil, apiFailure("reading the loop", err)
	}
	return loop, nil
}

// pushSecrets maps each push collector of the loop to the Secret of its token.
func pushSecrets(loop *v1alpha1.ControlLoop) map[string]string {
	out := map[string]string{}
	for _, c := range loop.Spec.Collectors {
		if c.Push != nil {
			out[c.Name] = c.Push.TokenSecret
		}
	}
	return out
}

// authorize checks token against the Secrets of the loop's push collectors. The caller is
// authenticated when the token is that of at least one of them (checked first among the
// collectors named, then the others); any other caller is denied. An authenticated caller
// whose token is not that of every collector named is told which.
func (s *Server) authorize(ctx context.Context, namespace, token string, named []string, secrets map[string]string) *httpError {
	sum := sha256.Sum256([]byte(token))
	holds := map[string]bool{} // by Secret
	check := func(secret string) (bool, *httpError) {
		if ok, seen := holds[secret]; seen {
			return ok, nil
		}
		ok, err := s.tokens.holds(ctx, types.NamespacedName{Namespace: namespace, Name: secret}, sum)
		if err != nil {
			return false, apiFailure("reading a token Secret", err)
		}
		holds[secret] = ok
		return ok, nil
	}
	var wrong []string
	authenticated := false
	for _, name := range slices.Sorted(slices.Values(named)) {
		ok, herr := check(secrets[name])
		if herr != nil {
			return herr
		}
		if !ok {
			wrong = append(wrong, name)
		}
		authenticated = authenticated || ok
	}
	for _, secret := range slices.Sorted(maps.Values(secrets)) {
		if authenticated {
			break
		}
		ok, herr := check(secret)
		if herr != nil {
			return herr
		}
		authenticated = ok
	}
	switch {
	case !authenticated:
		return denied()
	case len(wrong) > 0:
		return fail(http.StatusForbidden, "the token is not that of push collector %s: each collector named must hold it in its Secret",
			strings.Join(wrong, ", "))
	}
	return nil
}

// readToken reads the token of Secret key; nil when the Secret does not exist or holds no
// token (logged, by name: nobody can push to its collectors).
func (s *Server) readToken(ctx context.Context, key types.NamespacedName) ([]byte, error) {
	secret := &corev1.Secret{}
	if err := s.c.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			s.log.Info("a push collector's token Secret does not exist: nobody can push to it", "secret", key.String())
			return nil, nil
		}
		return nil, err
	}
	// A token written with a trailing newline (echo token | kubectl create secret ...) is the
	// same token.
	token := bytes.TrimSpace(secret.Data[TokenKey])
	if len(token) == 0 {
		s.log.Info("a push collector's token Secret has no "+TokenKey+" key: nobody can push to it", "secret", key.String())
		return nil, nil
	}
	return token, nil
}

// observation is one entry of status.observations as written: the value as a quantity, the
// time to the microsecond.
type observation struct {
	Value resource.Quantity `json:"value"`
	Time  string            `json:"time"`
}

// write patches every value of the report into the loop's status.observations, at once.
func (s *Server) write(ctx context.Context, loop *v1alpha1.ControlLoop, rep *report) *httpError {
	at := rep.at.UTC().Format(timeFormat)
	obs := make(map[string]observation, len(rep.values))
	for name, v := range rep.values {
		q, err := Quantity(v)
		if err != nil {
			return fail(http.StatusBadRequest, "%s: %v", name, err)
		}
		obs[name] = observation{Value: q, Time: at}
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"observations": obs}})
	if err != nil {
		return &httpError{code: http.StatusInternalServerError, msg: "encoding the observations", cause: err}
	}
	target := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: loop.Namespace, Name: loop.Name}}
	if err := s.c.Status().Patch(ctx, target, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			return fail(http.StatusNotFound, "controlloop %s/%s not found", loop.Namespace, loop.Name)
		}
		return apiFailure("writing the observations", err)
	}
	return nil
}

// Quantity is v as a Kubernetes quantity, exact to the nearest 1e-9 (a quantity's resolution)
// and to a float64's 17 significant digits: below 1e9 its decimal form rounded to 9 places (so
// 0.1+0.2 is 300m, not 300000001n: a quantity would round the float's 17th digit up), above its
// shortest form.
func Quantity(v float64) (resource.Quantity, error) {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return resource.Quantity{}, fmt.Errorf("%v is not a finite number", v)
	}
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if math.Abs(v) < 1e9 {
		s = strconv.FormatFloat(v, 'f', 9, 64)
	}
	return resource.ParseQuantity(s)
}

// apiFailure is a 503 when the API server is unreachable, overloaded or timed out (worth trying
// again) and a 500 when it refused otherwise. The details are logged, not sent.
func apiFailure(doing string, err error) *httpError {
	unavailable := &httpError{code: http.StatusServiceUnavailable, cause: err,
		msg: "the Kubernetes API server is unavailable (" + doing + "): try again later"}
	var status apierrors.APIStatus
	switch {
	case apierrors.IsServiceUnavailable(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsTooManyRequests(err),
		errors.Is(err, context.DeadlineExceeded):
		return unavailable
	case errors.As(err, &status):
		if status.Status().Code >= 500 {
			return unavailable
		}
		return &httpError{code: http.StatusInternalServerError, cause: err,
			msg: fmt.Sprintf("the Kubernetes API server refused the controller (%s): %s", doing, status.Status().Reason)}
	default: // no answer from the API server: it could not be reached
		unavailable.msg = "the Kubernetes API server is unreachable (" + doing + "): try again later"
		return unavailable
	}
}
