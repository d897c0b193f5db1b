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
		{"nothing to do", "services: {s: {url: https://x}}\n", `neither "bundles" nor "decision_logs"`},
		{"bad decision_logs", "services: {s: {url: https://x}}\ndecision_logs: {service: nope}\n", "decision_logs"},
		{"legacy bundle", "services: {s: {url: https://x}}\nbundle: {name: b, service: s}\n", `use "bundles"`},
		{"discovery", "services: {s: {url: https://x}}\ndiscovery: {resource: d}\nbundles: {b: {}}\n", `"discovery" is not supported`},
		{"status", "services: {s: {url: https://x}}\nstatus: {service: s}\nbundles: {b: {}}\n", `"status" is not supported`},
		{"unknown service", "services: {s: {url: https://x}}\nbundles: {b: {service: t}}\n", `service name "t" not found`},
		{"no service", "bundles: {b: {resource: x.tar.gz}}\n", `service name "" not found`},
		{"unknown key id", "services: {s: {url: https://x}}\nbundles: {b: {signing: {keyid: nope}}}\n", "nope"},
		{"bad polling", "services: {s: {url: https://x}}\nbundles: {b: {polling: {min_delay_seconds: 10, max_delay_seconds: 1}}}\n", "max polling delay"},
		{"persist", "services: {s: {url: https://x}}\nbundles: {b: {persist: true}}\n", "persist is not supported"},
		{"unknown credentials plugin", "services: {s: {url: https://x, credentials: {plugin: vault}}}\nbundles: {b: {service: s}}\n", `bundle "b": service "s": credentials: auth plugin "vault" not found`},
		{"two credentials", "services: {s: {url: https://x, credentials: {bearer: {token: t}, client_tls: {cert: c, private_key: k}}}}\nbundles: {b: {service: s}}\n", "a maximum one credential method must be specified"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(c.config), Limits{})
			require.Error(t, err, "accepted %q", c.config)
			assert.Nil(t, cfg)
			assert.Contains(t, strings.ToLower(err.Error()), strings.ToLower(c.want))
		})
	}
}

// TestParseConfigRefusesUnsignedAndInsecure: by default, a bundle from a
// bundle server with no key to verify it, and a service reached without
// TLS (for bundles or decision logs), are refused in one line naming the
// flag that allows them; with the flag they are accepted. A file://
// bundle is not downloaded: it needs no key.
func TestParseConfigRefusesUnsignedAndInsecure(t *testing.T) {
	const (
		unsigned = "services: {s: {url: https://bundles.example.com}}\nbundles: {b: {service: s, resource: b.tar.gz}}\n"
		plain    = "services: {s: {url: http://bundles.example.com}}\nbundles: {b: {service: s, resource: b.tar.gz}}\n"
		logs     = "services: {logs: {url: http://logs.example.com}}\ndecision_logs: {service: logs}\n"
		local    = "bundles: {b: {resource: \"file:///tmp/b\"}}\n"
	)
	for _, c := range []struct {
		name, config string
		lim          Limits
		want         string // "" when accepted
	}{
		{"unsigned", unsigned, Limits{}, `bundle "b" (https://bundles.example.com/b.tar.gz): no key to verify its signature: configure keys (and signing), or pass --allow-unsigned-bundles to follow it unsigned`},
		{"unsigned, allowed", unsigned, Limits{AllowUnsignedBundles: true}, ""},
		{"http bundles", plain, Limits{AllowUnsignedBundles: true}, `service "s" (http://bundles.example.com) is not https://: bundles and decision logs would travel in clear; pass --allow-insecure-bundle-services to allow it`},
		{"http bundles, allowed", plain, Limits{AllowUnsignedBundles: true, AllowInsecureServices: true}, ""},
		{"http decision logs", logs, Limits{}, `service "logs" (http://logs.example.com) is not https://`},
		{"http decision logs, allowed", logs, Limits{AllowInsecureServices: true}, ""},
		{"file bundle", local, Limits{}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(c.config), c.lim)
			if c.want == "" {
				require.NoError(t, err)
				cfg.Close()
				return
			}
			require.Error(t, err)
			assert.Nil(t, cfg)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}
