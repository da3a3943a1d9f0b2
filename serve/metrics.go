package serve

import (
	"bytes"
	"encoding/json"
	"os"
	"runtime"
	"strconv"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/zerocopy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
)

// metrics holds the server's Prometheus collectors, in a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cachegate_http_requests_total", Help: "HTTP responses by status code.",
	}, []string{"code"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "cachegate_http_request_duration_seconds", Help: "Time to answer a request, body included.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	m.reg.MustRegister(m.requests, m.latency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCacheCollector(s.c))
	m.reg.MustRegister(s.opts.Collectors...)
	if s.opts.Peers != nil {
		m.reg.MustRegister(s.opts.Peers.Collector())
	}
	if al := s.opts.AccessLog; al != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cachegate_access_log_dropped_total", Help: "Access log lines lost: dropped while the disk did not keep up, or in writes that failed.",
		}, func() float64 { return float64(al.Dropped()) }))
	}
	for i := zerocopy.Method(0); i < zerocopy.NumMethods; i++ {
		i := i
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cachegate_http_response_body_bytes_total", Help: "Body bytes sent, by transfer method.",
			ConstLabels: prometheus.Labels{"transfer": i.String()},
		}, func() float64 { return float64(s.bytesByMethod[i].Load()) }))
	}
	cacheFunc := func(name, help string, typ prometheus.ValueType, f func() float64) {
		if typ == prometheus.CounterValue {
			m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
		} else {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
		}
	}
	st := func() cacheStatus { return cacheStatusOf(s) }
	cacheFunc("cachegate_cache_hits_total", "Reads served from chunks already on disk.", prometheus.CounterValue, func() float64 { return float64(st().Hits) })
	cacheFunc("cachegate_cache_misses_total", "Reads that waited for the origin.", prometheus.CounterValue, func() float64 { return float64(st().Misses) })
	cacheFunc("cachegate_cache_used_bytes", "Bytes the cache holds on disk.", prometheus.GaugeValue, func() float64 { return float64(st().UsedBytes) })
	cacheFunc("cachegate_cache_limit_bytes", "The cache's size limit (--cache-size).", prometheus.GaugeValue, func() float64 { return float64(st().LimitBytes) })
	cacheFunc("cachegate_cache_objects", "Object versions in the cache.", prometheus.GaugeValue, func() float64 { return float64(st().Objects) })
	cacheFunc("cachegate_origin_bytes_fetched_total", "Object bytes read from the origin.", prometheus.CounterValue, func() float64 { return float64(st().BytesFetched) })
	cacheFunc("cachegate_http_connections", "Open client connections.", prometheus.GaugeValue, func() float64 { return float64(s.active.Load()) })
	for _, kind := range []string{"write", "send", "sendfile", "pread"} {
		kind := kind
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cachegate_transfer_syscalls_total", Help: "System calls made to move response bytes, by kind.",
			ConstLabels: prometheus.Labels{"syscall": kind},
		}, func() float64 {
			c := s.Syscalls()
			switch kind {
			case "write":
				return float64(c.Write)
			case "send":
				return float64(c.Send)
			case "sendfile":
				return float64(c.Sendfile)
			}
			return float64(c.Pread)
		}))
	}
	return m
}

func (m *metrics) request(code int) {
	m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}

func (m *metrics) render() []byte {
	var buf bytes.Buffer
	mfs, err := m.reg.Gather()
	if err != nil {
		return []byte("# " + err.Error() + "\n")
	}
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		enc.Encode(mf)
	}
	return buf.Bytes()
}

type cacheStatus struct {
	UsedBytes, LimitBytes int64
	Objects               int
	Hits, Misses          int64
	BytesFetched          int64
}

func cacheStatusOf(s *Server) cacheStatus {
	st := s.c.Status()
	return cacheStatus{st.UsedBytes, st.LimitBytes, st.Objects, st.Hits, st.Misses, st.BytesFetched}
}

// ServeStatus reports the server's figures for status documents.
func (s *Server) ServeStatus() control.ServeStatus {
	st := control.ServeStatus{
		Requests:        s.requests.Load(),
		Connections:     s.active.Load(),
		BytesByTransfer: s.BytesByMethod(),
		Goroutines:      runtime.NumGoroutine(),
	}
	if s.opts.Peers != nil {
		st.Peers = s.opts.Peers.Status()
	}
	s.mu.Lock()
	if s.main != nil {
		st.Listen = s.main.Addr().String()
	}
	s.mu.Unlock()
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		st.OpenFDs = len(ents)
	}
	return st
}

func (s *Server) statusJSON() []byte {
	serveStatus := s.ServeStatus
	s.mu.Lock()
	if s.main == nil { // a mount's --metrics listener: no HTTP server to report
		serveStatus = nil
	}
	s.mu.Unlock()
	st := control.StatusOf(s.c, serveStatus)
	for name := range st.Origins {
		if s.hidden(name) { // a daemon's origin this server does not serve
			delete(st.Origins, name)
		}
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	return append(b, '\n')
}

// admin answers /-/healthz, /-/metrics and /-/status. They reveal nothing of the
// namespace beyond counters, and need the bearer token when one is set (healthz
// excepted, for load balancers).
func (c *conn) admin(req *request, p string) bool {
	if req.method != "GET" && req.method != "HEAD" {
		return c.simple(405, "method not allowed", req.keepAlive)
	}
	var body []byte
	ct := "text/plain; charset=utf-8"
	switch p {
	case "/-/healthz":
		body = []byte("ok\n")
	case "/-/metrics", "/-/status":
		if c.s.opts.AuthToken != "" && !c.authorized(req) {
			return c.unauthorized(req)
		}
		if p == "/-/metrics" {
			body, ct = c.s.m.render(), "text/plain; version=0.0.4; charset=utf-8"
		} else {
			body, ct = c.s.statusJSON(), "application/json"
		}
	default:
		return c.simple(404, "not found", req.keepAlive)
	}
	return c.ok(req, ct, body, "Cache-Control", "no-store")
}

// cacheCollector reports the cache's Metrics: origin requests, errors and retries,
// evictions, stale answers and the fill latency histogram.
type cacheCollector struct {
	c                              *cache.Cache
	requests, errors, retries      *prometheus.Desc
	evictions, evictedBytes, stale *prometheus.Desc
	fill                           *prometheus.Desc
	prefetch, prefetchBytes        *prometheus.Desc // by kind: fetched, useful
}

func newCacheCollector(c *cache.Cache) *cacheCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &cacheCollector{c: c,
		requests:      d("cachegate_origin_requests_total", "Requests made of the origin, by operation (stat, list, read).", "op"),
		errors:        d("cachegate_origin_errors_total", "Origin requests that failed, by operation and kind (not_found, changed, timeout, canceled, status_4xx, status_5xx, network, other).", "op", "kind"),
		retries:       d("cachegate_origin_retries_total", "Origin reads repeated by the cache after a transient failure, by operation.", "op"),
		evictions:     d("cachegate_cache_evictions_total", "Objects evicted to make room (or by cache gc)."),
		evictedBytes:  d("cachegate_cache_evicted_bytes_total", "Disk bytes of the objects evicted."),
		stale:         d("cachegate_stale_answers_total", "Attributes (stat) and listings (list) served stale because the origin did not answer.", "kind"),
		fill:          d("cachegate_cache_fill_duration_seconds", "How long reads that missed waited for the origin to bring their chunks."),
		prefetch:      d("cachegate_prefetch_files_total", "Small files fetched ahead of a reader (fetched; their requests count as reads too), and those a reader opened afterwards (useful).", "kind"),
		prefetchBytes: d("cachegate_prefetch_bytes_total", "Bytes of the small files fetched ahead of a reader (fetched), and of those a reader opened afterwards (useful).", "kind"),
	}
}

func (cc *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cc.requests, cc.errors, cc.retries, cc.evictions, cc.evictedBytes, cc.stale, cc.fill, cc.prefetch, cc.prefetchBytes} {
		ch <- d
	}
}

func (cc *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	if cc.c == nil {
		return
	}
	m := cc.c.Metrics()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, o := range m.Origin {
		counter(cc.requests, o.Requests, o.Op)
		counter(cc.retries, o.Retries, o.Op)
		for _, kind := range cache.ErrorKinds {
			counter(cc.errors, o.Errors[kind], o.Op, kind)
		}
	}
	counter(cc.evictions, m.EvictedObjects)
	counter(cc.evictedBytes, m.EvictedBytes)
	counter(cc.stale, m.StaleStats, "stat")
	counter(cc.stale, m.StaleLists, "list")
	counter(cc.prefetch, m.PrefetchedFiles, "fetched")
	counter(cc.prefetch, m.PrefetchUseful, "useful")
	counter(cc.prefetchBytes, m.PrefetchedBytes, "fetched")
	counter(cc.prefetchBytes, m.PrefetchUsefulBytes, "useful")
	buckets := map[float64]uint64{}
	var n uint64
	for i, b := range cache.FillBuckets {
		n += uint64(m.FillCounts[i])
		buckets[b.Seconds()] = n
	}
	n += uint64(m.FillCounts[len(cache.FillBuckets)])
	ch <- prometheus.MustNewConstHistogram(cc.fill, n, m.FillSum.Seconds(), buckets)
}
