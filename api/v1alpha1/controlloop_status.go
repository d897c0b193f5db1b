package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Phase is where a loop is, as the controller sees it.
// +kubebuilder:validation:Enum=Pending;Running;Passive;Paused;Degraded
type Phase string

// The phases.
const (
	PhasePending  Phase = "Pending"  // not ticked yet
	PhaseRunning  Phase = "Running"  // deciding and acting
	PhasePassive  Phase = "Passive"  // deciding and recording, never acting (spec.state Passive)
	PhasePaused   Phase = "Paused"   // neither deciding nor acting (spec.state Paused)
	PhaseDegraded Phase = "Degraded" // the last tick failed: no bundle or revision, no input, or the policy failed
)

// Condition types.
const (
	// ConditionReady: the loop ticks with a usable policy.
	ConditionReady = "Ready"
	// ConditionPolicyReady: the bundle is known and the decision prepares.
	ConditionPolicyReady = "PolicyReady"
	// ConditionOverridden: a Deliberative loop's overrides are in effect.
	ConditionOverridden = "Overridden"
	// ConditionBundleHealthy: the loop's bundle, followed on a bundle
	// server, downloads and its newest revision passed the activation gate.
	// False while downloads fail or a revision is refused; the loop then
	// goes on deciding with the last good revision.
	ConditionBundleHealthy = "BundleHealthy"
)

// LoopOwner is a sharded controller replica running a loop: its member
// name and the epoch of its member Lease. A replica that lost its Lease
// comes back under a new epoch, so an owner recorded under an old one no
// longer runs.
type LoopOwner struct {
	Member string `json:"member"`
	Epoch  int64  `json:"epoch"`
}

// ControlLoopStatus is what the loop has done, and all it needs to go on
// after a restart: its policy's state, its overrides, its history and when
// it last changed each target.
type ControlLoopStatus struct {
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// PolicyRevision is the bundle revision that made the last decision
	// ("bandwidth@r42").
	// +optional
	PolicyRevision string `json:"policyRevision,omitempty"`
	// Bundle is the state of the loop's bundle in this controller.
	// +optional
	Bundle *BundleStatus `json:"bundle,omitempty"`
	// Tick counts the loop's ticks.
	// +optional
	Tick int64 `json:"tick,omitempty"`
	// +optional
	LastTick *metav1.MicroTime `json:"lastTick,omitempty"`
	// LastAction is the loop's last tick that changed something: when, and
	// what it applied.
	// +optional
	LastAction *LastAction `json:"lastAction,omitempty"`
	// Owner is the controller replica running the loop when loops are
	// sharded (governor run --shards auto); cleared when it stops the
	// loop's runner gracefully.
	// +optional
	Owner *LoopOwner `json:"owner,omitempty"`
	// Sequence counts the controller's writes of the fields above and
	// below that it owns. Each write must find the sequence its runner
	// last wrote or read (a JSON patch test), so that a write of a runner
	// that since stopped, crashed or lost the loop, landing late, never
	// overwrites a newer one.
	// +optional
	Sequence int64 `json:"sequence,omitempty"`

	// The JSON objects of the status (overrides, state, lastInput, a
	// target's applied) are atomic maps (+mapType=atomic): written whole
	// by the controller, each is one field of its managedFields, where the
	// API server would otherwise track, at every status write, every key
	// within them (a 10-target loop's lastInput: 3.4 KB of its 12 KB).

	// Overrides are the policy parameters a Deliberative loop wrote; they
	// win over spec.policy.params.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +mapType=atomic
	// +kubebuilder:validation:Type=object
	// +optional
	Overrides *apiextensionsv1.JSON `json:"overrides,omitempty"`
	// OverridesBy says which loop and revision last wrote the overrides.
	// +optional
	OverridesBy *OverridesSource `json:"overridesBy,omitempty"`

	// State is the policy's own memory between ticks (input.state).
	// +kubebuilder:pruning:PreserveUnknownFields
	// +mapType=atomic
	// +kubebuilder:validation:Type=object
	// +optional
	State *apiextensionsv1.JSON `json:"state,omitempty"`

	// LastInput is the part of the input of the loop's last decision on
	// its bundle's active revision (within the contract; never for a loop
	// that pins a revision) that the rest of the status does not hold:
	// input.metrics and input.targets, with input.time. Every replica's
	// activation gate makes the loop's decision again, with a new revision,
	// on the input rebuilt from it, the loop and this status.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +mapType=atomic
	// +kubebuilder:validation:Type=object
	// +optional
	LastInput *apiextensionsv1.JSON `json:"lastInput,omitempty"`

	// History holds the last decisions, oldest first, at most
	// spec.historyLimit.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=200
	// +optional
	History []HistoryEntry `json:"history,omitempty"`

	// Observations are metrics reported to the loop through the API, by name
	// (kubectl patch --subresource=status, or a managed system that reports
	// on its own). Each becomes input.metrics.<name>, stale after
	// spec.safety.staleAfter.
	// +optional
	Observations map[string]Observation `json:"observations,omitempty"`

	// Seen is when each metric the loop's last decision read was observed
	// (input.metrics.<name>.observed_ns, to the microsecond). The next tick
	// shows a metric as new (input.metrics.<name>.new) only when it was
	// observed at another time: one observation, one pass, whatever its
	// time tag says against the ticks' (a report tagged ahead of the
	// controller's clock, or behind it, or arriving while a tick ran).
	// +optional
	Seen map[string]metav1.MicroTime `json:"seen,omitempty"`

	// Targets records when each target was last changed (for cooldowns).
	// +listType=map
	// +listMapKey=name
	// +optional
	Targets []TargetStatus `json:"targets,omitempty"`

	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BundleStatus is a bundle as the controller follows it.
type BundleStatus struct {
	Name string `json:"name"`
	// Source is where it comes from: a URL, a file:// URL or a directory.
	// +optional
	Source string `json:"source,omitempty"`
	// ActiveRevision is the revision decisions run on ("bandwidth@r42"),
	// empty until one passes the activation gate.
	// +optional
	ActiveRevision string `json:"activeRevision,omitempty"`
	// LastDownload is when the bundle server last answered a poll.
	// +optional
	LastDownload *metav1.Time `json:"lastDownload,omitempty"`
	// LastActivation is when a revision last went live.
	// +optional
	LastActivation *metav1.Time `json:"lastActivation,omitempty"`
	// LastError is the last download error or refused revision, empty once
	// a revision goes live or downloads succeed again.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// +optional
	LastErrorTime *metav1.Time `json:"lastErrorTime,omitempty"`
}

// HistoryEntry is one tick: what the policy decided and what the guard let through.
type HistoryEntry struct {
	// Time is when the tick started, to the microsecond.
	Time metav1.MicroTime `json:"time"`
	Tick int64            `json:"tick"`
	// +optional
	Revision string `json:"revision,omitempty"`
	// Actions are what the policy decided.
	// +listType=atomic
	// +optional
	Actions []Action `json:"actions,omitempty"`
	// +listType=atomic
	// +optional
	Events []string `json:"events,omitempty"`
	// Applied are the actions the guard let through, as clamped (none while
	// the loop is Passive).
	// +listType=atomic
	// +optional
	Applied []Action `json:"applied,omitempty"`
	// Guard says what the guard changed or refused, and why.
	// +listType=atomic
	// +optional
	Guard []string `json:"guard,omitempty"`
	// Params is the merge patch a Deliberative loop's tick applied to the
	// supervised loop's overrides (none while Passive or refused).
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	// +optional
	Params *apiextensionsv1.JSON `json:"params,omitempty"`
	// Error is why no decision was acted on at all: a decision rejected
	// whole, an evaluation error, an actuator failure.
	// +optional
	Error string `json:"error,omitempty"`
}

// LastAction sums up a tick that changed a target or a supervised loop's
// params, for kubectl get (the history has the whole of it).
type LastAction struct {
	// Time is when the tick started.
	Time metav1.MicroTime `json:"time"`
	// Summary is what it applied: each target and its set, or the params a
	// Deliberative loop wrote to the loop it supervises (`web
	// {"replicas":4}`), cut at 100 bytes.
	Summary string `json:"summary"`
}

// OverridesSource is the Deliberative loop, and its policy revision, that
// wrote a loop's overrides, and when.
type OverridesSource struct {
	Loop     string           `json:"loop"`
	Revision string           `json:"revision"`
	Time     metav1.MicroTime `json:"time"`
}

// Action is one change to one target.
type Action struct {
	Target string `json:"target"`
	// +optional
	Metric string `json:"metric,omitempty"`
	// Set is the decision contract's set: replicas, bandwidth, resources, hpa.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	Set apiextensionsv1.JSON `json:"set"`
	// +optional
	Reason string `json:"reason,omitempty"`
}

// Observation is one reported value of a metric and when it was observed.
type Observation struct {
	Value resource.Quantity `json:"value"`
	// Time is when it was observed. A tick tells a new observation from one
	// it has seen by it, so the push endpoint writes it to the microsecond
	// (RFC 3339 with a fraction; a metav1.Time reads either form, where a
	// MicroTime would refuse whole seconds written by hand).
	Time metav1.Time `json:"time"`
}

// TargetStatus is what the loop remembers of one target.
type TargetStatus struct {
	Name string `json:"name"`
	// +optional
	LastChange *metav1.MicroTime `json:"lastChange,omitempty"`
	// Applied is, for an External target, the values the loop last applied
	// (a set: {"external": {"<setting>": value}}), each newer one merged
	// over those before: the current values when the system does not answer.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +mapType=atomic
	// +kubebuilder:validation:Type=object
	// +optional
	Applied *apiextensionsv1.JSON `json:"applied,omitempty"`
}

// ControlLoop runs one closed control loop.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=loop;loops,categories=governor
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.kind`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.status.policyRevision`
// +kubebuilder:printcolumn:name="Tick",type=integer,JSONPath=`.status.tick`
// +kubebuilder:printcolumn:name="Last Tick",type=date,JSONPath=`.status.lastTick`
// +kubebuilder:printcolumn:name="Last Action",type=string,JSONPath=`.status.lastAction.summary`
// +kubebuilder:printcolumn:name="Acted",type=date,JSONPath=`.status.lastAction.time`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.status.owner.member`,priority=1
type ControlLoop struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ControlLoopSpec `json:"spec"`
	// +optional
	Status ControlLoopStatus `json:"status,omitempty"`
}

// ControlLoopList is a list of ControlLoops.
// +kubebuilder:object:root=true
type ControlLoopList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ControlLoop `json:"items"`
}
