package serve

import (
	"net"
	"testing"

	"github.com/cachegate/cachegate/internal/zerocopy"
)

func TestEgressClassification(t *testing.T) {
	var r routes
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 80} }
	if e := r.classify(tcp("127.0.0.1"), tcp("127.0.0.1")); e != egressLoopback {
		t.Errorf("127.0.0.1: %v, want loopback", e)
	}
	if e := r.classify(tcp("::1"), tcp("::ffff:127.0.0.1")); e != egressLoopback {
		t.Errorf("v4-mapped loopback: %v, want loopback", e)
	}
	// A client dialling one of this host's own addresses is on this host too.
	ifcs, _ := net.Interfaces()
	for _, ifc := range ifcs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				if e := r.classify(tcp(n.IP.String()), tcp(n.IP.String())); e != egressLoopback {
					t.Errorf("%s to itself: %v, want loopback", n.IP, e)
				}
			}
		}
	}
	// A remote client, through an address no interface has: assumed scatter-gather.
	if e := r.classify(tcp("192.0.2.1"), tcp("198.51.100.7")); e != egressSG {
		t.Errorf("unknown interface: %v, want nic-sg", e)
	}
}

// TestAutoMethod pins the measured rule of autoMethod at the edges of each threshold.
func TestAutoMethod(t *testing.T) {
	const (
		sendfile = zerocopy.Sendfile
		mmap     = zerocopy.Mmap
		cp       = zerocopy.Copy
	)
	for _, c := range []struct {
		n                    int64
		multi, complete, tls bool
		e                    egress
		want                 zerocopy.Method
	}{
		{smallBody, false, true, false, egressSG, mmap},
		{smallBody + 1, false, true, false, egressSG, sendfile},
		{1 << 30, false, true, false, egressSG, sendfile},
		{4 << 10, false, false, false, egressSG, sendfile}, // still filling: no header+body writev
		{64 << 10, true, true, false, egressSG, mmap},      // multipart
		{1 << 30, false, true, true, egressSG, cp},         // TLS reads no mapping
		{1 << 30, false, false, true, egressSG, cp},
		{64 << 10, false, true, false, egressNoSG, mmap},
		{64 << 10, false, false, false, egressNoSG, sendfile},
		{smallBody, false, true, false, egressLoopback, mmap},
		{smallBody + 1, false, true, false, egressLoopback, sendfile},
		{8 << 20, false, true, false, egressLoopback, sendfile},
		{hugeFilling + 1, false, true, false, egressLoopback, sendfile},
		{hugeFilling, false, false, false, egressLoopback, sendfile}, // still filling
		{hugeFilling + 1, false, false, false, egressLoopback, cp},
	} {
		if got := autoMethod(c.n, c.multi, c.complete, c.tls, c.e); got != c.want {
			t.Errorf("autoMethod(n=%d, multi=%v, complete=%v, tls=%v, %v) = %v, want %v",
				c.n, c.multi, c.complete, c.tls, c.e, got, c.want)
		}
	}
}
