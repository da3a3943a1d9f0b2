package serve

import (
	"net"
	"testing"
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
