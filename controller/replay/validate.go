package replay

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/config/crd"
)

// loopSchema is the ControlLoop CRD's schema for the served version, ready
// to default and validate as the API server does.
type loopSchema struct {
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
	cel        *cel.Validator
}

var (
	schemaOnce   sync.Once
	schemaCached *loopSchema
	schemaErr    error
)

// controlLoopSchema reads the embedded CRD once.
func controlLoopSchema() (*loopSchema, error) {
	schemaOnce.Do(func() { schemaCached, schemaErr = newLoopSchema() })
	return schemaCached, schemaErr
}

func newLoopSchema() (*loopSchema, error) {
	crds, err := crd.CustomResourceDefinitions()
	if err != nil {
		return nil, err
	}
	for _, c := range crds {
		if c.Spec.Names.Kind != "ControlLoop" {
			continue
		}
		for _, v := range c.Spec.Versions {
			if v.Name != v1alpha1.GroupVersion.Version || v.Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return nil, fmt.Errorf("crd: %w", err)
			}
			ss, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return nil, fmt.Errorf("crd: %w", err)
			}
			validator, _, err := validation.NewSchemaValidator(&internal)
			if err != nil {
				return nil, fmt.Errorf("crd: %w", err)
			}
			return &loopSchema{structural: ss, validator: validator, cel: cel.NewValidator(ss, true, celconfig.PerCallLimit)}, nil
		}
	}
	return nil, fmt.Errorf("crd: no ControlLoop %s schema embedded", v1alpha1.GroupVersion.Version)
}

// validate defaults obj and checks it against the CRD's OpenAPI schema and
// its CEL rules, as the API server does on create; the error reads as
// kubectl prints the server's.
func (s *loopSchema) validate(ctx context.Context, obj map[string]any) error {
	structuraldefaulting.Default(obj, s.structural)
	errs := validation.ValidateCustomResource(nil, obj, s.validator)
	celErrs, _ := s.cel.Validate(ctx, nil, s.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	errs = append(errs, celErrs...)
	if len(errs) == 0 {
		return nil
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	return fmt.Errorf("ControlLoop.%s %q is invalid: %s", v1alpha1.GroupVersion.Group, name, errs.ToAggregate().Error())
}

// validateLoop checks a ControlLoop manifest as the API server would on
// create.
func validateLoop(manifest []byte) error {
	s, err := controlLoopSchema()
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSON(manifest)
	if err != nil {
		return err
	}
	var obj map[string]any // integers as int64, as the API server decodes them
	if err := utiljson.Unmarshal(js, &obj); err != nil {
		return err
	}
	return s.validate(context.Background(), obj)
}
