// Package xferbench measures the three transfer methods of internal/zerocopy on this
// machine: the same files sent to a client over TCP by read+write, mmap+write and
// sendfile in turn, with the sender's CPU time, context switches and page faults taken
// from getrusage(RUSAGE_THREAD) of the threads that did the sending, and its system
// calls counted around each call.
package xferbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/cachegate/cachegate/internal/zerocopy"
	"golang.org/x/sys/unix"
)

// Options configures a run.
type Options struct {
	Size  int64  // bytes per file
	Files int    // files per connection, sent one after another
	Conns int    // parallel connections
	Addr  string // listen address ("127.0.0.1:0")
	Dir   string // where the files go (a new temporary directory when empty)
}

// Result is one method's figures.
type Result struct {
	Method             string          `json:"method"`
	Requests           int             `json:"requests"`
	Bytes              int64           `json:"bytes"`
	Seconds            float64         `json:"seconds"`
	MiBPerSecond       float64         `json:"mib_per_second"`
	CPUSecondsPerGiB   float64         `json:"server_cpu_seconds_per_gib"`
	SyscallsPerRequest float64         `json:"syscalls_per_request"`
	SyscallsPerMiB     float64         `json:"syscalls_per_mib"`
	VoluntarySwitches  int64           `json:"voluntary_context_switches"`
	InvoluntarySwitch  int64           `json:"involuntary_context_switches"`
	MinorFaults        int64           `json:"minor_page_faults"`
	MajorFaults        int64           `json:"major_page_faults"`
	Syscalls           zerocopy.Counts `json:"syscalls"`
}

// Run measures every method in turn.
func Run(opts Options) ([]Result, error) {
	if opts.Size <= 0 || opts.Files <= 0 || opts.Conns <= 0 {
		return nil, errors.New("size, files and conns must be positive")
	}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "cachegate-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	files, err := makeFiles(dir, opts.Size, opts.Files)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	maps := make([][]byte, len(files))
	for i, f := range files {
		m, err := unix.Mmap(int(f.Fd()), 0, int(opts.Size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, err
		}
		defer unix.Munmap(m)
		maps[i] = m
	}
	// Warm the page cache: the measurement is of moving cached bytes.
	for _, f := range files {
		io.Copy(io.Discard, io.NewSectionReader(f, 0, opts.Size))
	}
	var out []Result
	for m := zerocopy.Method(0); m < zerocopy.NumMethods; m++ {
		r, err := runMethod(m, opts, files, maps)
		if err != nil {
			return out, fmt.Errorf("%v: %w", m, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func makeFiles(dir string, size int64, n int) ([]*os.File, error) {
	var files []*os.File
	buf := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{42})
	for i := 0; i < n; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%d", i)))
		if err != nil {
			return nil, err
		}
		for left := size; left > 0; left -= int64(len(buf)) {
			k := min(left, int64(len(buf)))
			rng.Read(buf[:k])
			if _, err := f.Write(buf[:k]); err != nil {
				return nil, err
			}
		}
		files = append(files, f)
	}
	return files, nil
}

// threadUsage is getrusage(RUSAGE_THREAD) of the calling thread.
func threadUsage() unix.Rusage {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return ru
}

func runMethod(m zerocopy.Method, opts Options, files []*os.File, maps [][]byte) (Result, error) {
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return Result{}, err
	}
	defer ln.Close()
	var mu sync.Mutex
	res := Result{Method: m.String()}
	var cpu time.Duration
	serverErr := make(chan error, opts.Conns)
	go func() {
		for i := 0; i < opts.Conns; i++ {
			c, err := ln.Accept()
			if err != nil {
				serverErr <- err
				return
			}
			go func() {
				// One OS thread per connection for its whole life, so that
				// RUSAGE_THREAD is exactly this sender's cost.
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				defer c.Close()
				sock, err := zerocopy.NewSocket(c.(*net.TCPConn), time.Minute)
				if err != nil {
					serverErr <- err
					return
				}
				buf := make([]byte, 256<<10)
				hdr := make([]byte, 16)
				before := threadUsage()
				var req [4]byte
				var sent int64
				n := 0
				for {
					if _, err := io.ReadFull(c, req[:]); err != nil {
						break
					}
					i := int(binary.LittleEndian.Uint32(req[:])) % len(files)
					binary.LittleEndian.PutUint64(hdr, uint64(opts.Size))
					switch m {
					case zerocopy.Copy:
						err = sock.SendCopy(hdr, files[i], 0, opts.Size, buf)
					case zerocopy.Mmap:
						err = sock.SendMmap(hdr, maps[i])
					case zerocopy.Sendfile:
						err = sock.SendFile(hdr, files[i], 0, opts.Size)
					}
					if err != nil {
						serverErr <- err
						return
					}
					sent += opts.Size
					n++
				}
				after := threadUsage()
				mu.Lock()
				cpu += time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
				res.VoluntarySwitches += after.Nvcsw - before.Nvcsw
				res.InvoluntarySwitch += after.Nivcsw - before.Nivcsw
				res.MinorFaults += after.Minflt - before.Minflt
				res.MajorFaults += after.Majflt - before.Majflt
				res.Syscalls.Add(sock.Counts)
				res.Requests += n
				res.Bytes += sent
				mu.Unlock()
				serverErr <- nil
			}()
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	clientErr := make(chan error, opts.Conns)
	for k := 0; k < opts.Conns; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				clientErr <- err
				return
			}
			defer c.Close()
			buf := make([]byte, 256<<10)
			for i := 0; i < opts.Files; i++ {
				var req [4]byte
				binary.LittleEndian.PutUint32(req[:], uint32(i+k))
				if _, err := c.Write(req[:]); err != nil {
					clientErr <- err
					return
				}
				if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, 16+opts.Size), buf); err != nil {
					clientErr <- err
					return
				}
			}
			c.(*net.TCPConn).CloseWrite()
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	close(clientErr)
	for err := range clientErr {
		if err != nil {
			return res, err
		}
	}
	for i := 0; i < opts.Conns; i++ {
		if err := <-serverErr; err != nil {
			return res, err
		}
	}
	gib := float64(res.Bytes) / (1 << 30)
	mib := float64(res.Bytes) / (1 << 20)
	res.MiBPerSecond = mib / res.Seconds
	res.CPUSecondsPerGiB = cpu.Seconds() / gib
	res.SyscallsPerRequest = float64(res.Syscalls.Total()) / float64(res.Requests)
	res.SyscallsPerMiB = float64(res.Syscalls.Total()) / mib
	return res, nil
}

// Model is what the zero-copy text predicts per method for one transfer.
type Model struct {
	Method    string `json:"method"`
	Switches  int    `json:"context_switches"`
	Copies    int    `json:"copies"`
	CPUCopies int    `json:"cpu_copies"`
}

// Models are the seed text's counts, with scatter-gather DMA for sendfile.
var Models = []Model{
	{"copy", 4, 4, 2},
	{"mmap", 4, 3, 1},
	{"sendfile", 2, 2, 0},
}
