package xferbench

import "testing"

// A small run of every method: all bytes counted, and the methods' system calls in the
// order the model predicts (read+write needs a pread per buffer on top of its writes).
func TestRunSmall(t *testing.T) {
	res, err := Run(Options{Size: 4 << 20, Files: 3, Conns: 2, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 {
		t.Fatalf("%d results", len(res))
	}
	by := map[string]Result{}
	for _, r := range res {
		by[r.Method] = r
		if r.Requests != 6 || r.Bytes != 6*(4<<20) || r.MiBPerSecond <= 0 || r.CPUSecondsPerGiB <= 0 {
			t.Errorf("%s: %+v", r.Method, r)
		}
	}
	if by["copy"].Syscalls.Pread == 0 || by["mmap"].Syscalls.Pread != 0 || by["sendfile"].Syscalls.Sendfile == 0 {
		t.Errorf("syscalls by method: %+v", by)
	}
	if by["sendfile"].SyscallsPerRequest >= by["copy"].SyscallsPerRequest {
		t.Errorf("sendfile made %.1f calls per request, read+write %.1f", by["sendfile"].SyscallsPerRequest, by["copy"].SyscallsPerRequest)
	}
}
