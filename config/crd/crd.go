// Package crd embeds the CustomResourceDefinitions that controller-gen writes into bases/
// (`make manifests`), for programs that install them without kustomize (governor demo).
// The kustomization in this directory installs the same files.
package crd

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// Bases holds bases/*.yaml, as generated.
//
//go:embed bases/*.yaml
var Bases embed.FS

// CustomResourceDefinitions decodes every CustomResourceDefinition in Bases, in file name
// order (a file may hold several documents).
func CustomResourceDefinitions() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := fs.Glob(Bases, "bases/*.yaml")
	if err != nil {
		return nil, err
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, name := range files {
		data, err := Bases.ReadFile(name)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := dec.Decode(&crd); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("crd: %s: %w", name, err)
			}
			if crd.Kind == "" && crd.Name == "" { // an empty document
				continue
			}
			if crd.Kind != "CustomResourceDefinition" {
				return nil, fmt.Errorf("crd: %s: a %s, not a CustomResourceDefinition", name, crd.Kind)
			}
			crds = append(crds, &crd)
		}
	}
	if len(crds) == 0 {
		return nil, errors.New("crd: no CustomResourceDefinition embedded")
	}
	return crds, nil
}
