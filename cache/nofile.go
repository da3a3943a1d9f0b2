package cache

import (
	"sync"
	"syscall"
)

// wantNoFile is the descriptor limit a cache asks for: with it, up to maxIdleOpen idle
// objects keep their files open (a quarter of it), with room to spare for connections
// and open handles.
const wantNoFile = 1 << 16

// raiseNoFile lifts the process's descriptor limit to wantNoFile when its hard limit
// is lower and the process may raise it (root, CAP_SYS_RESOURCE); the soft limit Go
// already raises to the hard one at start. Done once per process.
var raiseNoFile = sync.OnceFunc(func() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil || rl.Max >= wantNoFile {
		return
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: wantNoFile, Max: wantNoFile}) // EPERM: keep what we have
})

// noFileLimit returns the process's limit on open descriptors (a variable so that
// tests can pretend another).
var noFileLimit = func() uint64 {
	raiseNoFile()
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 1024
	}
	return rl.Cur
}

// idleOpenLimit is how many objects may keep their files open with no handle (two
// descriptors each): at most half of the descriptor limit, so that connections,
// pipes and objects held open by handles keep the other half, and at most
// maxIdleOpen. Where the limit cannot be raised (20,000 here, without
// CAP_SYS_RESOURCE) that still keeps a tree of 5,000 small files open between reads.
func idleOpenLimit(nofile uint64) int64 {
	return int64(max(16, min(maxIdleOpen, nofile/4)))
}
