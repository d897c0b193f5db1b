package bundles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/keys"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	bundleplugin "github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
	"github.com/sirupsen/logrus"
)

// supportedConfig are the top-level keys of an OPA configuration that the
// controller acts on. Anything else (discovery, status, server, ...) is
// refused rather than silently ignored.
var supportedConfig = []string{"services", "bundles", "keys", "decision_logs", "labels"}

// Config is the bundle distribution an OPA configuration file describes,
// parsed by OPA's own code: its config package, its plugin manager (services
// with their credentials, and keys) and its bundle plugin's configuration.
type Config struct {
	// Sources are the configured bundles, sorted by name.
	Sources []*Source
	// DecisionLog is nil unless decision_logs is configured.
	DecisionLog *DecisionLog
	// manager holds the service clients; decision logs use it too.
	manager *plugins.Manager
}

// Source is one configured bundle: where it is downloaded from (a service
// and resource, or a file:// URL for development), how often, and the keys
// its signature must verify with.
type Source struct {
	Name string
	// Service is the service's name; "" for a file:// resource.
	Service string
	// Resource is the bundle's path under the service's URL, or a file:// URL.
	Resource string
	// URL is where the bundle comes from, for status and messages.
	URL string
	// Download is OPA's download configuration: trigger, polling delays,
	// long polling.
	Download download.Config
	// Verification is nil for unsigned bundles; otherwise every revision
	// must be signed by one of its keys.
	Verification   *bundle.VerificationConfig
	SizeLimitBytes int64

	client rest.Client
	// keys are the configuration's, for the downloader's client (see
	// boundedClient).
	keys map[string]*keys.Config
}

// File is the local path of a file:// resource, "" for a downloaded one.
func (s *Source) File() string {
	if !strings.HasPrefix(s.Resource, "file://") {
		return ""
	}
	u, err := url.Parse(s.Resource)
	if err != nil { // checked by OPA's bundle config
		return ""
	}
	return u.Path
}

// ReadConfig reads an OPA configuration file (YAML or JSON), see ParseConfig.
func ReadConfig(path string, lim Limits) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading OPA configuration: %w", err)
	}
	cfg, err := ParseConfig(raw, lim)
	if err != nil {
		return nil, fmt.Errorf("OPA configuration %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses an OPA configuration (YAML or JSON) as `opa run
// --config-file` does: services, bundles, keys, and optionally
// decision_logs and labels. Unlike OPA, a bundle is required to be signed
// as soon as keys are configured (OPA then accepts unsigned bundles unless
// the bundle has a signing block): an unsigned policy must never replace a
// signed one just because its signature was stripped. A bundle downloaded
// with no key to verify it is refused unless lim.AllowUnsignedBundles, and
// a service that is not https:// unless lim.AllowInsecureServices. The
// decision log's buffer is bounded in bytes, by lim.DecisionLogBufferBytes
// at most.
func ParseConfig(raw []byte, lim Limits) (*Config, error) {
	var top map[string]any
	if err := util.Unmarshal(raw, &top); err != nil {
		return nil, err
	}
	for key := range top {
		if !slices.Contains(supportedConfig, key) {
			if key == "bundle" {
				return nil, errors.New(`the single "bundle" key is OPA's deprecated form: use "bundles"`)
			}
			return nil, fmt.Errorf("%q is not supported by governor (supported: %s)", key, strings.Join(supportedConfig, ", "))
		}
	}
	if top["bundles"] == nil && top["decision_logs"] == nil {
		return nil, errors.New(`neither "bundles" nor "decision_logs": the configuration has nothing for governor`)
	}
	m, err := plugins.New(raw, "governor", inmem.New(), plugins.Logger(opaLogger(os.Stderr, logging.Warn)),
		plugins.ConsoleLogger(opaLogger(os.Stdout, logging.Info)))
	if err != nil {
		return nil, err
	}
	if err := checkServices(m, lim.AllowInsecureServices); err != nil {
		m.Stop(context.Background())
		return nil, err
	}
	publicKeys := m.PublicKeys()
	trigger := plugins.TriggerPeriodic
	bundlesRaw := m.Config.Bundles
	if bundlesRaw == nil { // decision logs only
		bundlesRaw = json.RawMessage("{}")
	}
	parsed, err := bundleplugin.NewConfigBuilder().
		WithBytes(bundlesRaw).
		WithServices(m.Services()).
		WithKeyConfigs(publicKeys).
		WithTriggerMode(&trigger).
		Parse()
	if err != nil {
		m.Stop(context.Background())
		return nil, err
	}
	cfg := &Config{manager: m}
	if cfg.DecisionLog, err = newDecisionLog(m, lim.OrDefaults().DecisionLogBufferBytes); err != nil {
		m.Stop(context.Background())
		return nil, fmt.Errorf("decision_logs: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(parsed.Bundles)) {
		src := parsed.Bundles[name]
		if src.Persist {
			m.Stop(context.Background())
			return nil, fmt.Errorf("bundle %q: persist is not supported by governor", name)
		}
		s := &Source{
			Name:           name,
			Service:        src.Service,
			Resource:       src.Resource,
			Download:       src.Config,
			Verification:   src.Signing,
			SizeLimitBytes: src.SizeLimitBytes,
		}
		if s.Verification != nil && !s.Verification.SignatureRequired() {
			s.Verification = bundle.NewVerificationConfig(publicKeys, "", "", nil)
		}
		if s.File() != "" {
			s.Service, s.URL = "", s.Resource
		} else {
			s.client, s.keys = m.Client(src.Service), publicKeys
			if _, err := s.client.Config().AuthPlugin(s.client.AuthPluginLookup()); err != nil {
				m.Stop(context.Background())
				return nil, fmt.Errorf("bundle %q: service %q: credentials: %w", name, src.Service, err)
			}
			s.URL = strings.TrimSuffix(s.client.Config().URL, "/") + "/" + strings.TrimPrefix(s.Resource, "/")
			if s.Verification == nil && !lim.AllowUnsignedBundles {
				m.Stop(context.Background())
				return nil, fmt.Errorf("bundle %q (%s): no key to verify its signature: configure keys (and signing), or pass --allow-unsigned-bundles to follow it unsigned", name, s.URL)
			}
		}
		cfg.Sources = append(cfg.Sources, s)
	}
	return cfg, nil
}

// checkServices refuses services reached without TLS unless allowInsecure:
// bundles (signed or not) and decision logs, whose inputs hold what the
// loops observe, would travel in clear.
func checkServices(m *plugins.Manager, allowInsecure bool) error {
	if allowInsecure {
		return nil
	}
	for _, name := range slices.Sorted(slices.Values(m.Services())) {
		raw := m.Client(name).Config().URL
		if u, err := url.Parse(raw); err != nil || u.Scheme != "https" {
			return fmt.Errorf("service %q (%s) is not https://: bundles and decision logs would travel in clear; pass --allow-insecure-bundle-services to allow it", name, raw)
		}
	}
	return nil
}

// Close releases what parsing started (OPA's plugin manager).
func (c *Config) Close() {
	c.manager.Stop(context.Background())
}

// opaLogger is a logger for OPA's plugins: JSON lines, as the controller
// logs. The plugin manager's (upload failures, dropped decision logs) goes
// to stderr from warnings up; the console decision log (decision_logs:
// {console: true}) to stdout.
func opaLogger(w io.Writer, level logging.Level) logging.Logger {
	l := logging.New()
	l.SetOutput(w)
	l.SetFormatter(&logrus.JSONFormatter{})
	l.SetLevel(level)
	return l
}
