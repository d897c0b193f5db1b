package external

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/external/signature"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
)

// KeyName is the key of the signing key in an External target's Secret.
const KeyName = "key"

// IdempotencyKeyHeader names the change a POST carries: the same for every retry of it.
const IdempotencyKeyHeader = "Idempotency-Key"

// The CRD's defaults, for a target stored without them.
const (
	defaultTimeout = 2 * time.Second
	defaultRetries = 2
)

// firstBackoff is an Actuator's wait before its first retry.
const firstBackoff = 100 * time.Millisecond

// keyTTL is how long a signing key read from its Secret is used: a rotated key takes
// effect within it. Secrets are read one by one (the manager's client does not cache them).
const keyTTL = 30 * time.Second

// maxAnswerBytes bounds what is read of an answer.
const maxAnswerBytes = 1 << 20

// maxClients bounds the HTTP clients kept (one per CA bundle); past it they are made anew.
const maxClients = 64

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Change is the body of a POST: the settings to apply and what asks for them. The
// idempotency key is in it too, so that the signature covers it.
type Change struct {
	Settings       Settings `json:"settings"`
	Loop           string   `json:"loop"`
	Target         string   `json:"target"`
	Tick           int64    `json:"tick"`
	IdempotencyKey string   `json:"idempotencyKey"`
}

// idempotencyKey names a change: the loop (its UID: a loop deleted and made again is
// another), the tick, its intent (in microseconds since the epoch: after a crash
// before the tick was recorded, the next tick has the same number and another
// change) and the target.
func idempotencyKey(t actuators.Tick, target string) string {
	return fmt.Sprintf("%s/%d/%d/%s", t.UID, t.Number, t.Intent.UnixMicro(), target)
}

type cachedKey struct {
	key  []byte
	read time.Time
}

// signingKey is the key of a target's Secret, read at most once per keyTTL.
func (a *Actuator) signingKey(ctx context.Context, c client.Reader, namespace, name string) ([]byte, error) {
	id := types.NamespacedName{Namespace: namespace, Name: name}
	a.mu.Lock()
	k, ok := a.keys[id.String()]
	a.mu.Unlock()
	if ok && time.Since(k.read) < keyTTL {
		return k.key, nil
	}
	var s corev1.Secret
	if err := c.Get(ctx, id, &s); err != nil {
		return nil, fmt.Errorf("signing Secret %s: %w", id, err)
	}
	key := s.Data[KeyName]
	if len(key) < signature.MinKeyBytes {
		return nil, fmt.Errorf("signing Secret %s: its key %q holds %d bytes, at least %d are needed", id, KeyName, len(key), signature.MinKeyBytes)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for other, k := range a.keys {
		if time.Since(k.read) >= keyTTL {
			delete(a.keys, other)
		}
	}
	a.keys[id.String()] = cachedKey{key: key, read: time.Now()}
	return key, nil
}

// endpoint is what a request to t's system needs: the key that signs it and the client
// that trusts the system's certificate.
func (a *Actuator) endpoint(ctx context.Context, c client.Reader, t *actuators.Target) ([]byte, *http.Client, error) {
	spec := t.Spec.External
	key, err := a.signingKey(ctx, c, t.Workload.Namespace, spec.SigningSecret)
	if err != nil {
		return nil, nil, err
	}
	hc, err := a.httpClient(spec.CABundle)
	if err != nil {
		return nil, nil, err
	}
	return key, hc, nil
}

// httpClient is the client that trusts caBundle (the system's roots when empty). It
// follows no redirect: a signed change goes to the target's URL or nowhere.
func (a *Actuator) httpClient(caBundle []byte) (*http.Client, error) {
	sum := sha256.Sum256(caBundle)
	id := string(sum[:])
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.clients[id]; ok {
		return c, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caBundle) > 0 {
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(caBundle) {
			return nil, errors.New("caBundle holds no PEM certificate")
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if len(a.clients) >= maxClients {
		for id, old := range a.clients {
			old.CloseIdleConnections()
			delete(a.clients, id)
		}
	}
	a.clients[id] = c
	return c, nil
}

// exchange is one request and what became of it.
type exchange struct {
	status int    // 0: no answer
	body   []byte // the answer's, at most maxAnswerBytes
	// sent is whether the request was written whole: without an answer, the system may
	// have acted on it.
	sent bool
	err  error
}

// do sends one signed request, within timeout.
func do(ctx context.Context, hc *http.Client, method, url string, key, body []byte, idempotency string, timeout time.Duration) exchange {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		sent.Store(i.Err == nil)
	}})
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return exchange{err: err}
	}
	req.Header.Set("User-Agent", "governor")
	req.Header.Set("Accept", "application/json")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(IdempotencyKeyHeader, idempotency)
	}
	signature.Sign(req.Header, key, time.Now(), body)
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("%s %s: no answer within %s", method, url, timeout)
		}
		return exchange{sent: sent.Load(), err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	ex := exchange{status: resp.StatusCode, body: answer, sent: true}
	switch {
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		ex.err = fmt.Errorf("%s %s: %s%s", method, url, resp.Status, excerpt(answer))
	case err != nil:
		ex.err = fmt.Errorf("%s %s: reading the answer: %w", method, url, err)
	}
	return ex
}

// excerpt is the start of an answer's body on one line, for an error.
func excerpt(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return ": " + s
}

// retryable says whether a request is worth sending again: it got no answer, a 5xx or a 429.
func (e exchange) retryable() bool {
	return e.status == 0 || e.status >= 500 || e.status == http.StatusTooManyRequests
}

// post sends a change until the system answers it with a 2xx, at most 1 + retries times,
// waiting 0.1 s, 0.2 s, ... between tries (never past ctx's deadline). It says the change
// may have been applied when a request was sent and no answer came after it: the system may
// have acted on it, so the cooldown must hold. Every try carries the same idempotency key.
func (a *Actuator) post(ctx context.Context, c client.Reader, t *actuators.Target, settings Settings) (bool, error) {
	spec := t.Spec.External
	tick, ok := actuators.TickOf(ctx)
	if !ok {
		return false, errors.New("external: acting outside a loop's tick (no idempotency key)")
	}
	key, hc, err := a.endpoint(ctx, c, t)
	if err != nil {
		return false, err
	}
	idem := idempotencyKey(tick, t.Name)
	body, err := json.Marshal(Change{Settings: settings, Loop: tick.Loop.String(), Target: t.Name, Tick: tick.Number, IdempotencyKey: idem})
	if err != nil {
		return false, err
	}
	timeout, tries := limits(spec)
	var last exchange
	maybe := false
	n := 0
	for n < tries {
		if n > 0 && !wait(ctx, a.backoff<<(n-1)) {
			break
		}
		n++
		last = do(ctx, hc, http.MethodPost, spec.URL, key, body, idem, timeout)
		switch {
		case last.err == nil:
			return true, nil
		case last.status != 0:
			maybe = false // the system's answer to this key is the truth
		case last.sent:
			maybe = true
		}
		if ctx.Err() != nil || !last.retryable() {
			break
		}
	}
	err = fmt.Errorf("%w (%s)", last.err, plural(n, "try", "tries"))
	if maybe {
		return true, fmt.Errorf("%w: the change may have been applied, so the target's cooldown holds", err)
	}
	return false, err
}

// current asks the system for its settings: a GET on the target's URL answered with a JSON
// object of numbers. Names whose value is not a number of at least 0 are left out.
func (a *Actuator) current(ctx context.Context, c client.Reader, t *actuators.Target) (Settings, error) {
	spec := t.Spec.External
	key, hc, err := a.endpoint(ctx, c, t)
	if err != nil {
		return nil, err
	}
	timeout, _ := limits(spec)
	ex := do(ctx, hc, http.MethodGet, spec.URL, key, nil, "", timeout)
	if ex.err != nil {
		return nil, ex.err
	}
	dec := json.NewDecoder(bytes.NewReader(ex.body))
	dec.UseNumber()
	var answer map[string]any
	if err := dec.Decode(&answer); err != nil {
		return nil, fmt.Errorf("GET %s: the answer is not a JSON object: %w", spec.URL, err)
	}
	out := Settings{}
	for name, v := range answer {
		var p decision.Parser
		if q := p.Number(name, v); q != nil {
			out[name] = *q
		}
	}
	return out, nil
}

// limits are a target's timeout per request and its number of tries.
func limits(spec *v1alpha1.ExternalTarget) (time.Duration, int) {
	timeout, retries := defaultTimeout, defaultRetries
	if spec.Timeout != nil && spec.Timeout.Duration > 0 {
		timeout = spec.Timeout.Duration
	}
	if spec.Retries != nil && *spec.Retries >= 0 {
		retries = int(*spec.Retries)
	}
	return timeout, 1 + retries
}

// wait waits d, unless ctx ends first or its deadline comes sooner; false then.
func wait(ctx context.Context, d time.Duration) bool {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
