package serve

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cachegate/cachegate/internal/nic"
)

// egress is how a connection's bytes leave this host, which is what decides the
// cheapest way to send them.
type egress uint8

const (
	// egressSG: through an interface with scatter-gather, which takes page-cache
	// pages by reference; sendfile costs no CPU copy.
	egressSG egress = iota
	// egressNoSG: through an interface without scatter-gather; the kernel copies
	// inside sendfile as it would from a mapping.
	egressNoSG
	// egressLoopback: to a client on this host (any of its addresses; such traffic
	// goes through lo). No NIC and no DMA: the receiving side copies on our CPUs.
	egressLoopback
)

func (e egress) String() string {
	switch e {
	case egressNoSG:
		return "nic-no-sg"
	case egressLoopback:
		return "loopback"
	}
	return "nic-sg"
}

// routesTTL is how long the host's addresses and its interfaces' scatter-gather
// state are trusted: both can change while the server runs (ethtool -K, new
// addresses), and reading them takes a netlink dump and an ioctl per interface.
const routesTTL = 10 * time.Second

// routes classifies connections by egress from the host's interfaces.
type routes struct {
	mu    sync.Mutex
	at    time.Time
	local map[netip.Addr]string // this host's addresses, with the interface of each
	sg    map[string]bool       // scatter-gather state by interface
}

// classify returns the egress of a connection between local and remote.
func (r *routes) classify(local, remote net.Addr) egress {
	lip, rip := tcpAddr(local), tcpAddr(remote)
	if rip.IsLoopback() {
		return egressLoopback
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.local == nil || time.Since(r.at) > routesTTL {
		r.refresh()
	}
	if _, ok := r.local[rip]; ok {
		return egressLoopback
	}
	if sg, ok := r.sg[r.local[lip]]; ok && !sg {
		return egressNoSG
	}
	// Scatter-gather on, or unknown (an interface without ethtool support): what
	// nearly every NIC does.
	return egressSG
}

// refresh rereads the host's addresses and interfaces. r.mu must be held.
func (r *routes) refresh() {
	r.local, r.sg, r.at = map[netip.Addr]string{}, map[string]bool{}, time.Now()
	ifcs, _ := net.Interfaces()
	for _, ifc := range ifcs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					r.local[ip.Unmap()] = ifc.Name
				}
			}
		}
		if sg, err := nic.ScatterGather(ifc.Name); err == nil {
			r.sg[ifc.Name] = sg
		}
	}
}

func tcpAddr(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
