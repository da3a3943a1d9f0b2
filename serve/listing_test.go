package serve

import (
	"strings"
	"testing"

	"github.com/cachegate/cachegate/internal/origin"
)

// TestHTMLIndexHrefs: a name that looks like a URL scheme stays a relative link
// (issue 19 point 18).
func TestHTMLIndexHrefs(t *testing.T) {
	body := string(htmlIndex("d", []origin.Entry{
		{Name: "javascript:alert(document.domain)", Size: 1},
		{Name: "data:text", IsDir: true},
		{Name: `a"b<c>`, Size: 1},
	}))
	for _, want := range []string{
		`<a href="./javascript:alert%28document.domain%29">javascript:alert(document.domain)</a>`,
		`<a href="./data:text/">data:text/</a>`,
		`<a href="./a%22b%3Cc%3E">a&#34;b&lt;c&gt;</a>`,
		`<a href="../">../</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("index lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `href="javascript:`) || strings.Contains(body, `href="data:`) {
		t.Errorf("index links to a scheme:\n%s", body)
	}
}
