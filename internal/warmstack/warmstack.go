// Package warmstack runs calls on a few long-lived goroutines whose stacks
// stay grown between calls.
//
// A goroutine starts with a small stack and doubles it as calls go deeper,
// copying the whole stack each time and adjusting every frame in it. OPA
// evaluates Rego by recursion, hundreds of frames deep: a bandwidth
// decision on ten targets took 1.8 times as long on a fresh goroutine as on
// one of a Pool's (BenchmarkDecideOnFreshStacks in bundles), and with 1,000
// loops ticking, each tick on a goroutine of its own, the copying was a
// sixth of governor's CPU (BenchmarkScale's profile). A Pool's goroutines
// run only such calls: after the first, they have the stack the calls need
// (the garbage collector halves an idle one's now and then; the next call
// grows it back once).
package warmstack

import "sync"

// Pool runs calls on its goroutines when one is idle. It never queues a
// call: the caller decides what to do when none is (a slow call delays no
// other).
type Pool struct {
	size int
	once sync.Once
	// idle holds the goroutines waiting for a call.
	idle chan *worker
}

type worker struct{ calls chan func() }

// New returns a pool of size goroutines, started at its first call. They
// run for the life of the process: a pool is meant to be shared, as a
// package's variable.
func New(size int) *Pool {
	return &Pool{size: size, idle: make(chan *worker, size)}
}

// TryRun starts f on one of the pool's goroutines and returns true when one
// is idle; it returns false at once, without calling f, when none is. f
// must not panic: on the pool's goroutine, as on any, a panic it does not
// recover ends the program.
func (p *Pool) TryRun(f func()) bool {
	p.once.Do(p.start)
	select {
	case w := <-p.idle:
		w.calls <- f
		return true
	default:
		return false
	}
}

func (p *Pool) start() {
	for range p.size {
		w := &worker{calls: make(chan func(), 1)}
		go w.serve(p.idle)
		p.idle <- w
	}
}

func (w *worker) serve(idle chan<- *worker) {
	for f := range w.calls {
		f()
		idle <- w
	}
}
