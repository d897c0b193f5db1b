// Package prometheus is the collectors.Source of prometheus collectors: one
// PromQL instant query per tick, through client_golang's API client.
//
// A query must come down to one number: a scalar, or an instant vector of
// exactly one sample (aggregate with sum(), max(), histogram_quantile(), ...).
// Several series give no value but their values in Fields["series"]; an empty
// vector, NaN or ±Inf give no value; each case says why in Metric.Err.
package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
)

// DefaultTimeout bounds a query whose collector gives no timeout.
const DefaultTimeout = 5 * time.Second

// Options configure a Collector.
type Options struct {
	// Address is the Prometheus base URL, e.g. http://prometheus:9090 (a
	// path prefix such as http://host/prometheus is kept).
	Address string
	// RoundTripper carries the requests (TLS, authentication); nil is
	// client_golang's api.DefaultRoundTripper.
	RoundTripper http.RoundTripper
}

// Collector queries one Prometheus server. It is safe for concurrent use.
type Collector struct {
	api     promv1.API
	address string // for messages, credentials redacted
}

var _ collectors.Source = (*Collector)(nil)

// New returns a Collector for the Prometheus at opts.Address; the address must
// be an absolute http or https URL. Nothing is sent until the first Collect.
func New(opts Options) (*Collector, error) {
	u, err := parseAddress(opts.Address)
	if err != nil {
		return nil, err
	}
	client, err := api.NewClient(api.Config{Address: u.String(), RoundTripper: opts.RoundTripper})
	if err != nil {
		return nil, fmt.Errorf("prometheus address %q: %w", u.Redacted(), err)
	}
	return &Collector{api: promv1.NewAPI(bodyClient{client}), address: strings.TrimRight(u.Redacted(), "/")}, nil
}

// bodyClient hands the body of a response to the *[]byte the request's
// context carries under bodyKey, so that a result client_golang cannot
// decode (a string) can still be named.
type bodyClient struct{ api.Client }

type bodyKey struct{}

func (b bodyClient) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	resp, body, err := b.Client.Do(ctx, req)
	if p, ok := ctx.Value(bodyKey{}).(*[]byte); ok {
		*p = body
	}
	return resp, body, err
}

func parseAddress(address string) (*url.URL, error) {
	bad := func(why string) error { return fmt.Errorf("prometheus address %q: %s", address, why) }
	if strings.TrimSpace(address) == "" {
		return nil, errors.New("prometheus address is empty: want a URL such as http://prometheus:9090")
	}
	u, err := url.Parse(address)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, bad(err.Error())
	}
	if _, ok := u.User.Password(); ok {
		address = u.Redacted() // no password in messages
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, bad("want an http:// or https:// URL such as http://prometheus:9090")
	case u.Host == "":
		return nil, bad("no host")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, bad("want a base URL without query or fragment")
	}
	return u, nil
}

// Address is the Prometheus base URL, credentials redacted.
func (c *Collector) Address() string { return c.address }

// Collect runs spec.Prometheus.Query as an instant query at now, bounded by
// spec.Prometheus.Timeout (DefaultTimeout when zero) and by ctx.
func (c *Collector) Collect(ctx context.Context, _ *v1alpha1.ControlLoop, spec *v1alpha1.CollectorSpec, now time.Time) collectors.Metric {
	if spec == nil || spec.Prometheus == nil {
		return collectors.Metric{Err: "not a prometheus collector"}
	}
	query := spec.Prometheus.Query
	timeout := spec.Prometheus.Timeout.Duration
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body []byte
	qctx = context.WithValue(qctx, bodyKey{}, &body)
	start := time.Now()
	// The timeout goes to Prometheus as well, so that it stops evaluating
	// a query nobody waits for any more.
	value, warnings, err := c.api.Query(qctx, query, now, promv1.WithTimeout(timeout))

	var m collectors.Metric
	if err != nil {
		m.Err = c.describe(ctx, qctx, err, body, timeout, time.Since(start))
	} else {
		m = fromValue(query, value)
		if m.Value != nil && named(value) {
			if at, ok := c.sampleTime(qctx, query, now); ok {
				m.ObservedAt = at
			}
		}
	}
	if len(warnings) > 0 {
		ws := make([]any, len(warnings))
		for i, w := range warnings {
			ws[i] = oneLine(w)
		}
		if m.Fields == nil {
			m.Fields = map[string]any{}
		}
		m.Fields["warnings"] = ws
	}
	return m
}

// named is whether a result is one sample that still has its metric name:
// the query selects stored series (a recording rule, a gauge) rather than
// computing from them (sum(), rate(), ...), which drops the name.
func named(v model.Value) bool {
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		return false
	}
	_, ok = vec[0].Metric[model.MetricNameLabel]
	return ok
}

// sampleTime asks Prometheus when the one sample a query selects was written.
// Prometheus stamps every sample of an instant query with the evaluation time,
// so a series that stopped being written (a recording rule from a stuck rule
// group, federated or pushed data with timestamps) would look fresh for the
// whole lookback window (5m by default); timestamp() of a selector gives the
// stored sample's own time. For anything else it gives the evaluation time,
// and a failure leaves ObservedAt at the evaluation time.
func (c *Collector) sampleTime(ctx context.Context, query string, now time.Time) (time.Time, bool) {
	v, _, err := c.api.Query(ctx, "timestamp("+query+"\n)", now) // \n: the query may end in a # comment
	if err != nil {
		return time.Time{}, false
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		return time.Time{}, false
	}
	f := float64(vec[0].Value)
	if math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(math.Round(f * 1000))), true
}

// fromValue turns a query result into a Metric.
func fromValue(query string, v model.Value) collectors.Metric {
	switch v := v.(type) {
	case *model.Scalar:
		m := collectors.Metric{ObservedAt: v.Timestamp.Time(), Fields: map[string]any{"labels": map[string]any{}}}
		return withValue(m, float64(v.Value), query)
	case model.Vector:
		return fromVector(query, v)
	case model.Matrix:
		return collectors.Metric{Err: "the query returns a range vector (matrix), not a single value: " +
			"drop the [range] selector or wrap it in a function such as rate() and an aggregation such as sum()"}
	case *model.String:
		return collectors.Metric{Err: "the query returns a string, not a number"}
	case nil:
		return collectors.Metric{Err: "prometheus returned no result for " + oneLine(query)}
	}
	return collectors.Metric{Err: fmt.Sprintf("the query returns a %s, not a number", v.Type())}
}

func fromVector(query string, vec model.Vector) collectors.Metric {
	switch len(vec) {
	case 0:
		return collectors.Metric{Err: "no data for " + oneLine(query)}
	case 1:
		s := vec[0]
		m := collectors.Metric{ObservedAt: s.Timestamp.Time(), Fields: map[string]any{"labels": labels(s.Metric)}}
		if s.Histogram != nil {
			m.Err = "the query returns a native histogram, not a number: use histogram_quantile(), histogram_count() or histogram_sum()"
			return m
		}
		return withValue(m, float64(s.Value), query)
	}
	series := make(map[string]any, len(vec))
	var newest model.Time
	for i, s := range vec {
		if i == 0 || s.Timestamp.After(newest) {
			newest = s.Timestamp
		}
		// NaN and ±Inf have no JSON form; null compares below every
		// number in Rego, so a policy does not mistake it for a high value.
		var v any
		if f := float64(s.Value); s.Histogram == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			v = f
		}
		series[s.Metric.String()] = v
	}
	return collectors.Metric{
		ObservedAt: newest.Time(),
		Fields:     map[string]any{"series": series},
		Err:        fmt.Sprintf("%d series: use an aggregation such as sum() for a single value", len(vec)),
	}
}

// withValue sets m's Value to f, unless f is NaN or infinite.
func withValue(m collectors.Metric, f float64, query string) collectors.Metric {
	switch {
	case math.IsNaN(f):
		m.Err = "the query returns NaN (a division of zero by zero, or a quantile of no observations?): " + oneLine(query)
	case math.IsInf(f, 0):
		m.Err = fmt.Sprintf("the query returns %v: %s", f, oneLine(query))
	default:
		m.Value = &f
	}
	return m
}

func labels(lm model.Metric) map[string]any {
	out := make(map[string]any, len(lm))
	for k, v := range lm {
		out[string(k)] = string(v)
	}
	return out
}

// describe says in one line why a query failed.
func (c *Collector) describe(ctx, qctx context.Context, err error, body []byte, timeout, took time.Duration) string {
	var apiErr *promv1.Error
	if errors.As(err, &apiErr) {
		return c.describeAPI(apiErr, timeout)
	}
	if ctx.Err() != nil {
		// The caller gave up first (the tick's deadline, or shutdown).
		return fmt.Sprintf("query abandoned after %s: %v", took.Round(time.Millisecond), context.Cause(ctx))
	}
	if qctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("query timed out after %s (prometheus at %s)", timeout, c.address)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return fmt.Sprintf("prometheus at %s is unreachable: %s", c.address, oneLine(err.Error()))
	}
	if t := resultType(body); t != "" && t != "vector" && t != "scalar" {
		return fmt.Sprintf("the query returns a %s, not a number", t)
	}
	return fmt.Sprintf("query to prometheus at %s failed: %s", c.address, brief(err.Error()))
}

// resultType is the data.resultType of a query API response, if body is one.
func resultType(body []byte) string {
	var r struct {
		Data struct {
			ResultType string `json:"resultType"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &r) != nil {
		return ""
	}
	return r.Data.ResultType
}

func (c *Collector) describeAPI(e *promv1.Error, timeout time.Duration) string {
	msg := oneLine(e.Msg)
	switch e.Type {
	case promv1.ErrBadData:
		// A parse error reads `invalid parameter "query": 1:9: parse error: ...`.
		return "prometheus rejected the query: " + strings.TrimPrefix(msg, `invalid parameter "query": `)
	case promv1.ErrExec:
		return "the query failed in prometheus: " + msg
	case promv1.ErrTimeout:
		return fmt.Sprintf("query timed out after %s: prometheus: %s", timeout, msg)
	case promv1.ErrCanceled:
		return "prometheus canceled the query: " + msg
	case promv1.ErrServer, promv1.ErrClient:
		var code int
		if _, err := fmt.Sscanf(msg[strings.Index(msg, ":")+1:], "%d", &code); err == nil {
			msg = fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
		}
		hint := ""
		if code == http.StatusNotFound {
			hint = " (is the address Prometheus' base URL?)"
		}
		if detail := brief(e.Detail); detail != "" && detail != http.StatusText(code) {
			return fmt.Sprintf("prometheus at %s answered %s%s: %s", c.address, msg, hint, detail)
		}
		return fmt.Sprintf("prometheus at %s answered %s%s", c.address, msg, hint)
	case promv1.ErrBadResponse:
		return fmt.Sprintf("prometheus at %s sent a response that is not Prometheus' query API: %s", c.address, msg)
	}
	return fmt.Sprintf("prometheus at %s: %s: %s", c.address, e.Type, msg)
}

// brief is the start of an HTTP error body, on one line.
func brief(body string) string {
	s := oneLine(body)
	const max = 200
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return s
}

// oneLine folds s onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
