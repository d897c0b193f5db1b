package bandwidth

// PodApplyConcurrency is podApplyConcurrency, for the tests of package bandwidth_test.
const PodApplyConcurrency = podApplyConcurrency
