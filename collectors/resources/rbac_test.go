package resources_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"governor.dev/governor/test/cluster"
)

// markerRules reads the +kubebuilder:rbac markers of this package's Go sources (as
// controller-gen rbac does, without its merging), one PolicyRule each.
func markerRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	var rules []rbacv1.PolicyRule
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := os.Open(path)
		require.NoError(t, err)
		s := bufio.NewScanner(f)
		for s.Scan() {
			spec, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "// +kubebuilder:rbac:")
			if !ok {
				continue
			}
			var rule rbacv1.PolicyRule
			for _, kv := range strings.Split(spec, ",") {
				k, v, _ := strings.Cut(kv, "=")
				vals := strings.Split(strings.Trim(v, `"`), ";")
				switch k {
				case "groups":
					rule.APIGroups = vals
				case "resources":
					rule.Resources = vals
				case "verbs":
					rule.Verbs = vals
				}
			}
			rules = append(rules, rule)
		}
		require.NoError(t, s.Err())
		f.Close()
	}
	require.NotEmpty(t, rules)
	return rules
}

// rbacUser binds a ClusterRole with rules to a new user and returns the user's rest.Config.
func rbacUser(t *testing.T, s *cluster.APIServer, admin client.Client, name string, rules []rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, admin.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}))
	require.NoError(t, admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: name}},
	}))
	user, err := s.Env.AddUser(envtest.User{Name: name}, s.Config)
	require.NoError(t, err)
	return user.Config()
}
