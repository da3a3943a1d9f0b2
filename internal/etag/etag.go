// Package etag derives the strong ETag that cachegate's server sends for an object
// version. It is shared by the server (which emits and checks it) and the peer tier
// (which asks a peer for a version by it, If-Match, and checks the answer's).
package etag

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// For returns a strong ETag for an object version: the origin's own ETag when it
// is one, else a hash of the version string. "" for versions that only a size
// tells apart.
func For(version string) string {
	if strings.HasPrefix(version, "size:") {
		// Only the size tells such versions apart (the origin sent no validator): a
		// tag made from it would match two contents of one size, and If-Range would
		// then resume a download with another version's bytes. No tag, no match.
		return ""
	}
	if len(version) >= 2 && version[0] == '"' && version[len(version)-1] == '"' {
		return version
	}
	sum := sha256.Sum256([]byte(version))
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}
