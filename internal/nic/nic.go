// Package nic asks the kernel whether a network interface does scatter-gather DMA
// (NETIF_F_SG), which decides whether sendfile is truly zero-copy on it: without SG the
// kernel copies the page-cache pages into linear socket buffers inside sendfile.
package nic

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	siocEthtool = 0x8946 // SIOCETHTOOL
	ethtoolGSG  = 0x18   // ETHTOOL_GSG: get scatter-gather enable
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with its union used as a pointer (ifr_data).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// Info is what cachegate reports about one interface.
type Info struct {
	Name          string   `json:"name"`
	ScatterGather bool     `json:"scatter_gather"`
	Loopback      bool     `json:"loopback"`
	Addrs         []string `json:"addrs,omitempty"`
	Error         string   `json:"error,omitempty"`
	ZeroCopySend  bool     `json:"zero_copy_sendfile"`
	Explanation   string   `json:"explanation"`
}

// ScatterGather queries ETHTOOL_GSG for the interface name, the same answer as
// `ethtool -k NAME | grep scatter-gather`. It needs no privileges.
func ScatterGather(name string) (bool, error) {
	if len(name) >= unix.IFNAMSIZ {
		return false, fmt.Errorf("interface name %q too long", name)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	val := ethtoolValue{cmd: ethtoolGSG}
	var req ifreqData
	copy(req.name[:], name)
	req.data = uintptr(unsafe.Pointer(&val))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&req)))
	if errno != 0 {
		return false, fmt.Errorf("ETHTOOL_GSG on %s: %w", name, errno)
	}
	return val.data != 0, nil
}

// Describe reports on one interface.
func Describe(ifc net.Interface) Info {
	info := Info{Name: ifc.Name, Loopback: ifc.Flags&net.FlagLoopback != 0}
	if addrs, err := ifc.Addrs(); err == nil {
		for _, a := range addrs {
			info.Addrs = append(info.Addrs, a.String())
		}
	}
	sg, err := ScatterGather(ifc.Name)
	if err != nil {
		info.Error = err.Error()
		info.Explanation = "scatter-gather state unknown; sendfile may copy inside the kernel"
		return info
	}
	info.ScatterGather = sg
	switch {
	case info.Loopback && sg:
		info.Explanation = "scatter-gather on, but loopback has no DMA: sendfile saves the user-space copies and system calls, and the receiver still copies"
	case sg:
		info.ZeroCopySend = true
		info.Explanation = "scatter-gather on: sendfile hands page-cache pages to the NIC, no CPU copy"
	default:
		info.Explanation = "scatter-gather off: the kernel copies inside sendfile (still fewer copies and switches than read+write)"
	}
	return info
}

// ForAddr returns the interface that owns ip, or every interface for an unspecified
// address (0.0.0.0, ::).
func ForAddr(ip net.IP) ([]net.Interface, error) {
	ifcs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	if ip == nil || ip.IsUnspecified() {
		return ifcs, nil
	}
	for _, ifc := range ifcs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return []net.Interface{ifc}, nil
			}
		}
	}
	if ip.IsLoopback() {
		if lo, err := net.InterfaceByName("lo"); err == nil {
			return []net.Interface{*lo}, nil
		}
	}
	return nil, fmt.Errorf("no interface has address %s", ip)
}
