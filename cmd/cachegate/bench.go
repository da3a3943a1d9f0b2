package main

import (
	"fmt"
	"net"
	"os"
	"text/tabwriter"

	"github.com/cachegate/cachegate/internal/nic"
	"github.com/cachegate/cachegate/internal/units"
	"github.com/cachegate/cachegate/internal/xferbench"
)

type benchCmd struct {
	Transfer benchTransferCmd `cmd:"" help:"Measure read+write vs mmap+write vs sendfile on this machine."`
}

type benchTransferCmd struct {
	Size  Size   `env:"CACHEGATE_BENCH_SIZE" help:"Size of each file (default: ${default})." default:"256MiB" placeholder:"SIZE"`
	Files int    `env:"CACHEGATE_BENCH_FILES" help:"Files each connection fetches, one after another: 1 to 1000 (default: ${default})." default:"4" placeholder:"N"`
	Conns int    `env:"CACHEGATE_BENCH_CONNS" help:"Parallel connections: 1 to 1024 (default: ${default})." default:"1" placeholder:"N"`
	Addr  string `env:"CACHEGATE_BENCH_ADDR" help:"Address to listen on; use this host's NIC address to go through it (default: ${default}, loopback)." default:"127.0.0.1:0" placeholder:"ADDR"`
	JSON  bool   `env:"-" help:"Print JSON: results per method, the model, and the interface."`
}

// benchReport is the --json document.
type benchReport struct {
	Size      int64              `json:"size"`
	Files     int                `json:"files"`
	Conns     int                `json:"conns"`
	Interface []nic.Info         `json:"interfaces"`
	Results   []xferbench.Result `json:"results"`
	Model     []xferbench.Model  `json:"model"`
}

func (b *benchTransferCmd) Run() error {
	host, _, err := net.SplitHostPort(b.Addr)
	if err != nil {
		return usagef("--addr %q: %v", b.Addr, err)
	}
	var infos []nic.Info
	if ifcs, err := nic.ForAddr(net.ParseIP(host)); err == nil {
		for _, ifc := range ifcs {
			infos = append(infos, nic.Describe(ifc))
		}
	}
	if !b.JSON {
		fmt.Fprintf(os.Stderr, "sending %d x %s over %d connection(s) by each method...\n", b.Files*b.Conns, units.FormatSize(int64(b.Size)), b.Conns)
	}
	res, err := xferbench.Run(xferbench.Options{Size: int64(b.Size), Files: b.Files, Conns: b.Conns, Addr: b.Addr})
	if err != nil {
		return err
	}
	if b.JSON {
		return printJSON(benchReport{Size: int64(b.Size), Files: b.Files, Conns: b.Conns, Interface: infos, Results: res, Model: xferbench.Models})
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "method\tMiB/s\tCPU-s/GiB\tsyscalls/req\tsyscalls/MiB\tvol. switches\tinvol. switches\tpage faults\t")
	for _, r := range res {
		fmt.Fprintf(w, "%s\t%.0f\t%.3f\t%.1f\t%.2f\t%d\t%d\t%d\t\n", r.Method, r.MiBPerSecond, r.CPUSecondsPerGiB,
			r.SyscallsPerRequest, r.SyscallsPerMiB, r.VoluntarySwitches, r.InvoluntarySwitch, r.MinorFaults+r.MajorFaults)
	}
	w.Flush()
	fmt.Println()
	for _, i := range infos {
		sg := "off"
		if i.ScatterGather {
			sg = "on"
		}
		fmt.Printf("interface %s: scatter-gather %s — %s\n", i.Name, sg, i.Explanation)
	}
	fmt.Println("\nThe zero-copy model per transfer, beside what this run observed:")
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  method\tmodel: switches\tcopies (by CPU)\tobserved: syscalls/req\tCPU-s/GiB")
	for i, m := range xferbench.Models {
		if i < len(res) {
			fmt.Fprintf(w, "  %s\t%d\t%d (%d)\t%.1f\t%.3f\n", m.Method, m.Switches, m.Copies, m.CPUCopies, res[i].SyscallsPerRequest, res[i].CPUSecondsPerGiB)
		}
	}
	w.Flush()
	fmt.Println(`Why they differ:
  - A call moves at most what the socket buffer takes, so one transfer is many calls
    (each a pair of user/kernel switches); the context switches getrusage counts are
    the sender sleeping for buffer space, not the model's crossings.
  - mmap+write needs no pread, so it makes far fewer calls than read+write; its first
    touch of a mapping costs page faults (the kernel takes them inside write).
  - Loopback has no DMA: sendfile only references page-cache pages, but the receiver
    copies them out on this machine's CPUs, and the sender runs the loopback receive
    path. Over a NIC with scatter-gather DMA the remaining CPU copy disappears.`)
	if len(res) == 3 {
		cp, mm, sf := res[0], res[1], res[2]
		switch {
		case sf.CPUSecondsPerGiB < mm.CPUSecondsPerGiB && mm.CPUSecondsPerGiB < cp.CPUSecondsPerGiB:
			fmt.Println("  - Here the order is the model's: sendfile used the least CPU, mmap+write sits in between.")
		case mm.CPUSecondsPerGiB <= sf.CPUSecondsPerGiB:
			fmt.Printf("  - Here mmap+write used %.3f CPU-s/GiB against sendfile's %.3f: with no DMA to hand\n"+
				"    pages to, sendfile's page references save little over one kernel copy from the\n"+
				"    mapping, and its sender also runs the receive path of the page-referencing packets.\n",
				mm.CPUSecondsPerGiB, sf.CPUSecondsPerGiB)
		}
	}
	return nil
}
