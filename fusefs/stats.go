package fusefs

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are a mount's counters, for /-/metrics. The caller makes one and passes it
// in Options; the mount only adds to it.
//
// Bytes read by passthrough are not among them: the kernel reads those from the
// cache file itself and never tells the daemon. PassthroughOpens counts the opens
// it serves that way.
type Stats struct {
	OpenHandles      atomic.Int64 // files open through the mount now
	PassthroughOpens atomic.Int64 // opens read by the kernel from the cache file
	CachedOpens      atomic.Int64 // opens whose reads go through cachegate
	SpliceBytes      atomic.Int64 // bytes read through cachegate from the cache file (spliced)
	OriginBytes      atomic.Int64 // bytes read through cachegate from the origin (no room in the cache)
}

// Collectors returns the Prometheus collectors of s's counters.
func (s *Stats) Collectors() []prometheus.Collector {
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cachegate_mount_open_handles", Help: "Files open through the mount."},
			func() float64 { return float64(s.OpenHandles.Load()) }),
		counter("cachegate_mount_opens_total", "Opens through the mount, by how their reads go: passthrough (the kernel reads the cache file, unseen by cachegate) or cached (through cachegate).",
			prometheus.Labels{"mode": "passthrough"}, &s.PassthroughOpens),
		counter("cachegate_mount_opens_total", "Opens through the mount, by how their reads go: passthrough (the kernel reads the cache file, unseen by cachegate) or cached (through cachegate).",
			prometheus.Labels{"mode": "cached"}, &s.CachedOpens),
		counter("cachegate_mount_read_bytes_total", "Bytes read through cachegate (not passthrough), by source: splice (from the cache file) or origin (no room in the cache).",
			prometheus.Labels{"path": "splice"}, &s.SpliceBytes),
		counter("cachegate_mount_read_bytes_total", "Bytes read through cachegate (not passthrough), by source: splice (from the cache file) or origin (no room in the cache).",
			prometheus.Labels{"path": "origin"}, &s.OriginBytes),
	}
}
