package peer

import "github.com/prometheus/client_golang/prometheus"

// Collector returns the group's metrics: cachegate_peer_* with a peer label.
func (g *Group) Collector() prometheus.Collector { return collector{g} }

type collector struct{ g *Group }

var (
	descUp        = prometheus.NewDesc("cachegate_peer_up", "Whether the peer is in use (1), or down and probed (0); this member itself is always 1.", []string{"peer"}, nil)
	descRequests  = prometheus.NewDesc("cachegate_peer_requests_total", "Span reads sent to the peer.", []string{"peer"}, nil)
	descBytes     = prometheus.NewDesc("cachegate_peer_bytes_total", "Bytes the peer answered span reads with.", []string{"peer"}, nil)
	descErrors    = prometheus.NewDesc("cachegate_peer_errors_total", "Span reads to the peer that failed (refused, timed out, wrong answer).", []string{"peer"}, nil)
	descFallbacks = prometheus.NewDesc("cachegate_peer_fallbacks_total", "Span reads meant for the peer that were read from the origin instead.", []string{"peer"}, nil)
	descServedReq = prometheus.NewDesc("cachegate_peer_served_requests_total", "Span reads the peer sent this member.", []string{"peer"}, nil)
	descServedB   = prometheus.NewDesc("cachegate_peer_served_bytes_total", "Bytes this member answered the peer's span reads with.", []string{"peer"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descRequests, descBytes, descErrors, descFallbacks, descServedReq, descServedB} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.g.Status() {
		up := 1.0
		if s.State == "down" {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, s.URL)
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(s.Requests), s.URL)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.Bytes), s.URL)
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.Errors), s.URL)
		ch <- prometheus.MustNewConstMetric(descFallbacks, prometheus.CounterValue, float64(s.Fallbacks), s.URL)
		ch <- prometheus.MustNewConstMetric(descServedReq, prometheus.CounterValue, float64(s.ServedRequests), s.URL)
		ch <- prometheus.MustNewConstMetric(descServedB, prometheus.CounterValue, float64(s.ServedBytes), s.URL)
	}
}
