//go:build integration

package cluster

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// MarkerRules reads the +kubebuilder:rbac markers of the Go sources under
// dir (tests excluded), as controller-gen rbac does without its merging:
// one PolicyRule each. Tests use it to run code with exactly the
// permissions it declares.
func MarkerRules(t testing.TB, dir string) []rbacv1.PolicyRule {
	t.Helper()
	var rules []rbacv1.PolicyRule
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s := bufio.NewScanner(bytes.NewReader(src))
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
		return s.Err()
	})
	if err != nil {
		t.Fatalf("reading rbac markers under %s: %v", dir, err)
	}
	if len(rules) == 0 {
		t.Fatalf("no rbac markers under %s", dir)
	}
	return rules
}

// RBACUser binds a ClusterRole with rules to a new user of s and returns the
// user's rest.Config.
func RBACUser(t testing.TB, s *APIServer, admin client.Client, name string, rules []rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	ctx := context.Background()
	if err := admin.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: name}},
	}); err != nil {
		t.Fatal(err)
	}
	user, err := s.Env.AddUser(envtest.User{Name: name}, s.Config)
	if err != nil {
		t.Fatal(err)
	}
	return user.Config()
}
