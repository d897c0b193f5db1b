package bundles

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/test/testkeys"
)

func TestParseConfig(t *testing.T) {
	key := testkeys.RSA(t)
	cfg, err := ParseConfig([]byte(`
services:
  acme:
    url: https://bundles.example.com/v1/
    credentials:
      bearer: {token: secret}
bundles:
  reactive:
    service: acme
    resource: policies/reactive.tar.gz
    polling: {min_delay_seconds: 5, max_delay_seconds: 10, long_polling_timeout_seconds: 30}
    signing: {keyid: release}
  bandwidth: {}
  dev:
    resource: file:///tmp/dev
keys:
  release:
    algorithm: RS256
    key: |
`+indent(key.Public, "      ")), Limits{})
	require.NoError(t, err)
	defer cfg.Close()
	require.Len(t, cfg.Sources, 3)
	bw, dev, re := cfg.Sources[0], cfg.Sources[1], cfg.Sources[2]

	assert.Equal(t, "reactive", re.Name)
	assert.Equal(t, "https://bundles.example.com/v1/policies/reactive.tar.gz", re.URL)
	assert.Equal(t, int64(5), *re.Download.Polling.MinDelaySeconds)
	assert.Equal(t, int64(30), *re.Download.Polling.LongPollingTimeoutSeconds)
	require.NotNil(t, re.Verification)
	assert.Equal(t, "release", re.Verification.KeyID)
	assert.True(t, re.Verification.SignatureRequired())
	assert.Equal(t, "secret", re.client.Config().Credentials.Bearer.Token, "the service's credentials come from OPA's service config")

	// Defaults as OPA injects them: the only service, bundles/<name>. With
	// keys configured, an unsigned bundle is refused, unlike OPA.
	assert.Equal(t, "acme", bw.Service)
	assert.Equal(t, "https://bundles.example.com/v1/bundles/bandwidth", bw.URL)
	require.NotNil(t, bw.Verification)
	assert.True(t, bw.Verification.SignatureRequired())

	assert.Equal(t, "/tmp/dev", dev.File())
	assert.Equal(t, "", dev.Service)
}

func TestParseConfigRefusesWhatItCannotDo(t *testing.T) {
	for _, c := range []struct{ name, config, want string }{
		{"not YAML", "services: [", "yaml"},
		{"nothing to do", "services: {s: {url: http://x}}\n", `neither "bundles" nor "decision_logs"`},
		{"bad decision_logs", "services: {s: {url: http://x}}\ndecision_logs: {service: nope}\n", "decision_logs"},
		{"legacy bundle", "services: {s: {url: http://x}}\nbundle: {name: b, service: s}\n", `use "bundles"`},
		{"discovery", "services: {s: {url: http://x}}\ndiscovery: {resource: d}\nbundles: {b: {}}\n", `"discovery" is not supported`},
		{"status", "services: {s: {url: http://x}}\nstatus: {service: s}\nbundles: {b: {}}\n", `"status" is not supported`},
		{"unknown service", "services: {s: {url: http://x}}\nbundles: {b: {service: t}}\n", `service name "t" not found`},
		{"no service", "bundles: {b: {resource: x.tar.gz}}\n", `service name "" not found`},
		{"unknown key id", "services: {s: {url: http://x}}\nbundles: {b: {signing: {keyid: nope}}}\n", "nope"},
		{"bad polling", "services: {s: {url: http://x}}\nbundles: {b: {polling: {min_delay_seconds: 10, max_delay_seconds: 1}}}\n", "max polling delay"},
		{"persist", "services: {s: {url: http://x}}\nbundles: {b: {persist: true}}\n", "persist is not supported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(c.config), Limits{})
			require.Error(t, err, "accepted %q", c.config)
			assert.Nil(t, cfg)
			assert.Contains(t, strings.ToLower(err.Error()), strings.ToLower(c.want))
		})
	}
}
