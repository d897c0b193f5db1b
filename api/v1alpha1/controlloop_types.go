package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LoopKind is how a loop acts: on workloads, or on another loop's policy.
// +kubebuilder:validation:Enum=Reactive;Deliberative
type LoopKind string

const (
	// Reactive loops act fast, on workloads.
	Reactive LoopKind = "Reactive"
	// Deliberative loops watch a reactive loop's decisions and rewrite its
	// policy's parameters.
	Deliberative LoopKind = "Deliberative"
)

// LoopState is what the user wants the loop to do.
// +kubebuilder:validation:Enum=Running;Passive;Paused
type LoopState string

const (
	// Running loops decide and act.
	Running LoopState = "Running"
	// Passive loops decide and record, never act: shadow mode for a new policy.
	Passive LoopState = "Passive"
	// Paused loops do nothing.
	Paused LoopState = "Paused"
)

// ControlLoopSpec is a closed loop: what it watches, which policy decides,
// and the only objects it may change, within hard bounds.
// +kubebuilder:validation:XValidation:rule="self.kind == 'Deliberative' || !has(self.supervises)",message="supervises is only for Deliberative loops"
// +kubebuilder:validation:XValidation:rule="self.kind != 'Deliberative' || has(self.supervises)",message="a Deliberative loop must name the loop it supervises"
// +kubebuilder:validation:XValidation:rule="!has(self.minInterval) || !has(self.interval) || duration(self.minInterval) <= duration(self.interval)",message="minInterval must not exceed interval"
type ControlLoopSpec struct {
	// +kubebuilder:default=Reactive
	// +optional
	Kind LoopKind `json:"kind,omitempty"`

	// +kubebuilder:default=Running
	// +optional
	State LoopState `json:"state,omitempty"`

	// Interval between ticks, at least 100ms.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms')",message="interval must be at least 100ms"
	// +kubebuilder:default="1s"
	// +optional
	Interval metav1.Duration `json:"interval,omitempty"`

	// MinInterval is the shortest time between two ticks: a loop also ticks
	// as soon as a new observation arrives for it (a push), at most this
	// often, so that a flood of observations cannot spin it. At least 10ms,
	// at most the interval.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms')",message="minInterval must be at least 10ms"
	// +kubebuilder:default="50ms"
	// +optional
	MinInterval *metav1.Duration `json:"minInterval,omitempty"`

	Policy PolicySpec `json:"policy"`

	// Collectors fill input.metrics, one entry per collector name.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Collectors []CollectorSpec `json:"collectors,omitempty"`

	// Targets are the only objects this loop may change, each with hard bounds.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=100
	// +optional
	Targets []TargetSpec `json:"targets,omitempty"`

	// +optional
	Safety SafetySpec `json:"safety,omitempty"`

	// Supervises names the Reactive loop, in the same namespace, whose policy
	// parameters this Deliberative loop rewrites.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Supervises string `json:"supervises,omitempty"`

	// HistoryLimit bounds status.history (and input.history).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=200
	// +kubebuilder:default=20
	// +optional
	HistoryLimit int32 `json:"historyLimit,omitempty"`
}

// PolicySpec names the Rego decision that drives the loop.
type PolicySpec struct {
	// Bundle is the name of a bundle the controller knows (e.g. bandwidth).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Bundle string `json:"bundle"`

	// Decision is the rule's path, e.g. governor/bandwidth/decision.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^(data[./])?[A-Za-z_][A-Za-z0-9_]*([./][A-Za-z_][A-Za-z0-9_]*)*$`
	Decision string `json:"decision"`

	// Revision pins the bundle's manifest revision the loop decides with.
	// Empty follows the bundle's active revision. A pinned revision must be
	// one the controller holds (the active one or one of the last few
	// activated); otherwise the loop does not decide, and says so.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Revision string `json:"revision,omitempty"`

	// Timeout bounds each decision: one still evaluating after it is
	// stopped, and the tick fails. At most governor run's
	// --max-decision-timeout (10s by default), which caps it.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="timeout must be above 0"
	// +kubebuilder:default="1s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Params are the policy's parameters: input.params, deep-merged with
	// status.overrides (overrides win).
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	// +optional
	Params *apiextensionsv1.JSON `json:"params,omitempty"`

	// Overridable are the top-level keys of params a Deliberative loop
	// supervising this one may rewrite (in status.overrides); none when empty.
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Overridable []string `json:"overridable,omitempty"`
}

// CollectorSpec is one source of input.metrics.<name>. Exactly one kind is set.
// +kubebuilder:validation:XValidation:rule="[has(self.hubble), has(self.prometheus), has(self.resources), has(self.push)].filter(x, x).size() == 1",message="set exactly one of hubble, prometheus, resources, push"
type CollectorSpec struct {
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// +optional
	Hubble *HubbleCollector `json:"hubble,omitempty"`
	// +optional
	Prometheus *PrometheusCollector `json:"prometheus,omitempty"`
	// +optional
	Resources *ResourcesCollector `json:"resources,omitempty"`
	// +optional
	Push *PushCollector `json:"push,omitempty"`
}

// The kinds of collector: the field of a CollectorSpec that is set.
const (
	CollectorHubble     = "hubble"
	CollectorPrometheus = "prometheus"
	CollectorResources  = "resources"
	CollectorPush       = "push"
)

// Kind is the collector's kind, "" when it sets none (the CRD requires one).
func (c *CollectorSpec) Kind() string {
	switch {
	case c.Hubble != nil:
		return CollectorHubble
	case c.Prometheus != nil:
		return CollectorPrometheus
	case c.Resources != nil:
		return CollectorResources
	case c.Push != nil:
		return CollectorPush
	}
	return ""
}

// HubbleCollector keeps a sliding window of L7 flow latencies from Hubble
// Relay, for the flows that match every filter given.
type HubbleCollector struct {
	// +optional
	Source *FlowEndpoint `json:"source,omitempty"`
	// +optional
	Destination *FlowEndpoint `json:"destination,omitempty"`
	// HTTPStatus keeps flows whose HTTP status matches one of these, as
	// Hubble filters them ("200", "5+", ...).
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	HTTPStatus []string `json:"httpStatus,omitempty"`
	// Window is how far back the statistics reach.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:default="10s"
	// +optional
	Window metav1.Duration `json:"window,omitempty"`
}

// FlowEndpoint selects one side of a flow.
type FlowEndpoint struct {
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Workload is the name of the workload (Deployment, StatefulSet, ...)
	// whose Pods the flow comes from or goes to.
	// +optional
	Workload string `json:"workload,omitempty"`
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// PrometheusCollector runs one PromQL instant query per tick.
type PrometheusCollector struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Query string `json:"query"`
	// Timeout bounds the query.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:default="5s"
	// +optional
	Timeout metav1.Duration `json:"timeout,omitempty"`
}

// ResourceName is a resource whose usage a collector reads.
// +kubebuilder:validation:Enum=cpu;memory
type ResourceName string

// ResourcesCollector reads the CPU or memory usage of a target's Pods from
// metrics.k8s.io: value is the usage as a percentage of the Pods' requests.
type ResourcesCollector struct {
	// Target is the name of one of the loop's targets.
	Target string `json:"target"`
	// Resource is cpu or memory.
	Resource ResourceName `json:"resource"`
}

// PushCollector takes observations the managed system posts to the
// controller's push API.
type PushCollector struct {
	// TokenSecret names a Secret in the loop's namespace whose key "token"
	// holds the bearer token the managed system presents.
	// +kubebuilder:validation:MinLength=1
	TokenSecret string `json:"tokenSecret"`
}

// TargetKind is a kind of target a loop may change: a workload, or a managed
// system outside Kubernetes.
// +kubebuilder:validation:Enum=Deployment;StatefulSet;External
type TargetKind string

// TargetExternal is the kind of a target outside Kubernetes (a Lupus egress
// agent, ...): it has no workload, only spec.targets[].external.
const TargetExternal TargetKind = "External"

// TargetSpec is one object the loop may change and the bounds of every change.
// A decision may only set what the target declares bounds for.
// +kubebuilder:validation:XValidation:rule="!has(self.hpa) || !has(self.replicas)",message="an HPA owns the replicas of its target: declare hpa or replicas bounds, not both"
// +kubebuilder:validation:XValidation:rule="(has(self.ref.kind) && self.ref.kind == 'External') == has(self.external)",message="a target of kind External declares external (its url, signing Secret and settings), and only it does"
// +kubebuilder:validation:XValidation:rule="!has(self.external) || !(has(self.replicas) || has(self.bandwidth) || has(self.resources) || has(self.hpa))",message="an External target has settings only: no replicas, bandwidth, resources or hpa bounds"
type TargetSpec struct {
	// Name is how policies name the target (input.targets.<name>).
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_-]*$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	Ref TargetRef `json:"ref"`

	// +optional
	Replicas *ReplicaBounds `json:"replicas,omitempty"`
	// +optional
	Bandwidth *BandwidthBounds `json:"bandwidth,omitempty"`
	// +optional
	Resources *ResourceBounds `json:"resources,omitempty"`
	// +optional
	HPA *HPABounds `json:"hpa,omitempty"`
	// External is a managed system outside Kubernetes (ref.kind External):
	// where its settings are and their bounds.
	// +optional
	External *ExternalTarget `json:"external,omitempty"`

	// OutOfBounds is what an action does to a value found outside its bounds
	// (someone set it by hand): Step moves it toward the bounds by at most
	// maxStep per action, never away; Snap moves it to the nearest bound at once.
	// +kubebuilder:default=Step
	// +optional
	OutOfBounds OutOfBounds `json:"outOfBounds,omitempty"`
}

// OutOfBounds is how a value outside its bounds is brought back.
// +kubebuilder:validation:Enum=Step;Snap
type OutOfBounds string

const (
	// Step moves a value outside the bounds toward them by at most maxStep per action.
	Step OutOfBounds = "Step"
	// Snap moves a value outside the bounds to the nearest bound in one action.
	Snap OutOfBounds = "Snap"
)

// TargetRef is a workload in the loop's namespace.
type TargetRef struct {
	// +kubebuilder:default=Deployment
	// +optional
	Kind TargetKind `json:"kind,omitempty"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ReplicaBounds bound the replicas a decision may set.
// +kubebuilder:validation:XValidation:rule="self.min <= self.max",message="min must not be above max"
type ReplicaBounds struct {
	// +kubebuilder:validation:Minimum=0
	Min int32 `json:"min"`
	// +kubebuilder:validation:Minimum=0
	Max int32 `json:"max"`
	// MaxStep is the largest change in one action; 0 means no limit.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxStep int32 `json:"maxStep,omitempty"`
}

// BandwidthMode is where the bandwidth annotation is written.
// +kubebuilder:validation:Enum=Live;Template
type BandwidthMode string

const (
	// Live annotates the target's running Pods (Cilium applies it without a
	// restart) and records the desired value on the workload for Pods that
	// appear later.
	Live BandwidthMode = "Live"
	// Template writes the pod template, which rolls the workload.
	Template BandwidthMode = "Template"
)

// BandwidthBounds bound the egress and ingress bandwidth, in bits per second.
// +kubebuilder:validation:XValidation:rule="string(self.min).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.min)) && quantity(string(self.min)).compareTo(quantity('0')) >= 0",message="min must be a quantity of at least 0, such as 100M or 64Mi (a decimal exponent has at most 2 digits)"
// +kubebuilder:validation:XValidation:rule="string(self.max).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.max)) && quantity(string(self.max)).compareTo(quantity('0')) >= 0",message="max must be a quantity of at least 0, such as 100M or 64Mi (a decimal exponent has at most 2 digits)"
// +kubebuilder:validation:XValidation:rule="!has(self.maxStep) || (string(self.maxStep).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.maxStep)) && quantity(string(self.maxStep)).compareTo(quantity('0')) > 0)",message="maxStep must be a quantity above 0 (leave it out for no limit)"
// +kubebuilder:validation:XValidation:rule="!(string(self.min).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.min)) && string(self.max).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.max))) || quantity(string(self.min)).compareTo(quantity(string(self.max))) <= 0",message="min must not be above max"
type BandwidthBounds struct {
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	Min resource.Quantity `json:"min"`
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	Max resource.Quantity `json:"max"`
	// MaxStep is the largest change in one action, above 0; unset means no limit.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +optional
	MaxStep *resource.Quantity `json:"maxStep,omitempty"`
	// +kubebuilder:default=Live
	// +optional
	Mode BandwidthMode `json:"mode,omitempty"`
}

// ResourceBounds bound the container requests and limits a decision may set.
type ResourceBounds struct {
	// Containers a decision may change; empty means all of them.
	// +listType=set
	// +optional
	Containers []string `json:"containers,omitempty"`
	// +optional
	CPU *QuantityRange `json:"cpu,omitempty"`
	// +optional
	Memory *QuantityRange `json:"memory,omitempty"`
}

// QuantityRange is an inclusive range of quantities.
// +kubebuilder:validation:XValidation:rule="string(self.min).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.min)) && quantity(string(self.min)).compareTo(quantity('0')) >= 0",message="min must be a quantity of at least 0, such as 100M or 64Mi (a decimal exponent has at most 2 digits)"
// +kubebuilder:validation:XValidation:rule="string(self.max).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.max)) && quantity(string(self.max)).compareTo(quantity('0')) >= 0",message="max must be a quantity of at least 0, such as 100M or 64Mi (a decimal exponent has at most 2 digits)"
// +kubebuilder:validation:XValidation:rule="!has(self.maxStep) || (string(self.maxStep).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.maxStep)) && quantity(string(self.maxStep)).compareTo(quantity('0')) > 0)",message="maxStep must be a quantity above 0 (leave it out for no limit)"
// +kubebuilder:validation:XValidation:rule="!(string(self.min).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.min)) && string(self.max).matches('^[^eE]*([eE]([+-]?[0-9]{1,2})?)?$') && isQuantity(string(self.max))) || quantity(string(self.min)).compareTo(quantity(string(self.max))) <= 0",message="min must not be above max"
type QuantityRange struct {
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	Min resource.Quantity `json:"min"`
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	Max resource.Quantity `json:"max"`
	// MaxStep is the largest change in one action, above 0; unset means no limit.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +optional
	MaxStep *resource.Quantity `json:"maxStep,omitempty"`
}

// HPABounds bound the minReplicas and maxReplicas a decision may give the
// target's HorizontalPodAutoscaler.
// +kubebuilder:validation:XValidation:rule="self.min <= self.max",message="min must not be above max"
type HPABounds struct {
	// Name of the HPA; by default the one whose scaleTargetRef is the target.
	// +optional
	Name string `json:"name,omitempty"`
	// +kubebuilder:validation:Minimum=1
	Min int32 `json:"min"`
	// +kubebuilder:validation:Minimum=1
	Max int32 `json:"max"`
}

// ExternalTarget is a managed system outside Kubernetes that Governor acts on
// over HTTPS: a POST of the settings to change, signed (HMAC-SHA256 with the
// key of signingSecret), and, if the system offers it, a GET of their current
// values, on the same URL.
type ExternalTarget struct {
	// URL of the system's settings, https.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",message="url must be an https URL with a host"
	URL string `json:"url"`
	// SigningSecret names a Secret in the loop's namespace whose key "key"
	// holds the HMAC-SHA256 key (at least 32 bytes) that signs every request.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SigningSecret string `json:"signingSecret"`
	// CABundle holds the PEM certificates that sign the system's server
	// certificate; the system's roots when empty.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`
	// Timeout bounds each request, above 0 and at most 30s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('30s')",message="timeout must be above 0 and at most 30s"
	// +kubebuilder:default="2s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// Retries are the requests made again, with backoff, after one that got
	// no answer, a 5xx or a 429: at most 5.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=5
	// +kubebuilder:default=2
	// +optional
	Retries *int32 `json:"retries,omitempty"`
	// Settings are the system's numeric settings a decision may set, each
	// with its bounds.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Settings []ExternalSetting `json:"settings"`
}

// ExternalSetting is one numeric setting of an External target and its
// bounds, numbers of at least 0 (quantities: 40, "0.5", "2k").
type ExternalSetting struct {
	// Name is the setting's key in decisions, in the input and in the
	// system's JSON.
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_.-]*$`
	// +kubebuilder:validation:MaxLength=63
	Name          string `json:"name"`
	QuantityRange `json:",inline"`
}

// SafetySpec limits how often and on what data the loop acts.
type SafetySpec struct {
	// Cooldown holds a target after a change.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="cooldown must not be negative"
	// +kubebuilder:default="30s"
	// +optional
	Cooldown metav1.Duration `json:"cooldown,omitempty"`
	// StaleAfter: metrics older than this are stale, and a decision that
	// acts while any metric is stale is refused.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:default="15s"
	// +optional
	StaleAfter metav1.Duration `json:"staleAfter,omitempty"`
	// MaxActions caps the actions applied in one tick.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=5
	// +optional
	MaxActions int32 `json:"maxActions,omitempty"`
}
