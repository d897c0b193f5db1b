package main

import (
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The scope flags take comma-separated namespaces; a name that is not a
// namespace is refused in one line, naming the flag; '*' only where it means
// every namespace.
func TestScopeFlags(t *testing.T) {
	parse := func(args ...string) *runFlags {
		t.Helper()
		var f runFlags
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		f.scopeFlags(fs)
		require.NoError(t, fs.Parse(args))
		return &f
	}
	f := parse("--watch-namespaces=factory,lab", "--observe-namespaces=kube-system", "--prometheus-namespaces=*")
	assert.Equal(t, []string{"factory", "lab"}, f.opts.WatchNamespaces)
	assert.Equal(t, []string{"kube-system"}, f.opts.Scope.Observe)
	assert.Equal(t, []string{"*"}, f.opts.Scope.Prometheus)
	require.NoError(t, f.checkScopes())

	for args, want := range map[string]string{
		"--watch-namespaces=*":           `--watch-namespaces: "*" is not a namespace name: a lowercase RFC 1123 label must consist of`,
		"--observe-namespaces=Factory":   `--observe-namespaces: "Factory" is not a namespace name`,
		"--prometheus-namespaces=a/b":    `--prometheus-namespaces: "a/b" is not a namespace name`,
		"--watch-namespaces=factory,,ok": `--watch-namespaces: "" is not a namespace name`,
	} {
		err := parse(args).checkScopes()
		if assert.Error(t, err, args) {
			assert.Contains(t, err.Error(), want, args)
		}
	}
}
