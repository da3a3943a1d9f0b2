// Package peer is cachegate's flat peer tier: N gateways in front of one origin that
// behave as one cache of their summed size, each byte fetched from the origin by one
// member (as Varnish's shard director, groupcache and Alluxio's hash ring do), over
// cachegate's own HTTP server.
//
// # Design choices and motivation
//
//   - Ownership by rendezvous (highest random weight) hashing of (origin name, path,
//     version, span index): every member computes the same owner from the same list,
//     with no coordination, and a change of membership moves only the keys of the
//     members that came or went (a fourth member takes about a quarter of the spans,
//     all from the others; TestRendezvousSpreadAndStability). Spans (--peer-span,
//     64 MiB) rather than whole files, so one big file spreads over the group; the
//     version is in the key, so a changed object lands on fresh owners and no one
//     mixes versions. A score is MurmurHash3's finalizer of the member's hash XOR the
//     key's (FNV-1a): O(members) per span, nothing to rebuild on a change.
//   - The tier is an origin decorator (Group.Wrap), not a cache feature: the cache
//     keeps fetching, checksumming and storing as for any origin (CRC per chunk, its
//     flights, its readahead), and only ReadRange changes. It cuts [off, off+n) at
//     span boundaries and reads each run from its owner with an ordinary ranged GET
//     on the owner's server (If-Match: the version's strong ETag, etag.For; the
//     Header marker; the bearer token), or from the origin when this member owns it.
//     Stat and List go to the origin: metadata is small, and every member must see
//     versions change by itself. The decorator does not offer origin.WholeGetter: a
//     small file's owner is known only once its version is, so small files are
//     stat'ed, then read through their owner like big ones.
//   - The owner never forwards: a request carrying Header is read under
//     origin.WithNoForward, which the cache hands to its fill's detached context
//     (origin.CarryHints, as it hands over a bandwidth limit), so the owner fills
//     from the origin itself, and reads no ahead past the range asked (what lies
//     beyond is another member's). Concurrent misses across the group meet in the
//     owner's chunk flights: one origin fetch per chunk. A peer's request never
//     waits on the flight of a chunk its member is itself asking a peer for (the
//     decorator is a cache.Forwarder): while two members' lists differ, each may
//     think the other owns a span, and each would wait on the other until
//     --peer-timeout; the request reads that chunk from the origin instead.
//   - Failures never reach readers. A peer that refuses, does not answer within
//     --peer-timeout (to first byte, and then for each 64 KiB of its body, so a
//     trickling peer is given up on too), or answers with
//     another status, ETag or Content-Range (start, end, and a total covering the
//     range: the strong ETag pins the version and so its size) or a short body is
//     marked down and the rest of its run is read from the origin; the caller sees
//     only the origin's own errors. A 412 (the owner knows another version) is read
//     around without marking it down: the two learn of the change within their
//     metadata TTL. A down member is probed on /-/healthz with backoff (250 ms
//     doubling to 8 s) and used again when it answers 200.
//   - A plain http:// member is read over origin.RawClient's connections, whose
//     bodies splice: a fill (--peer-copy local) moves a peer's bytes from its
//     socket into the cache file (the reader is an origin.FileWriter), and the
//     server's read through to a plain-TCP client (--peer-copy owner) from its
//     socket to the client's (origin.ConnWriter), so the requester copies none of
//     them in user space. https members (TLS decrypts in user space) and
//     segments from an origin that cannot splice are read into a buffer. The
//     checks are those of the net/http path: the header block is bounded, the
//     stall timer counts spliced bytes too, and stops while a read through's
//     client is the one waiting (a slow client is not the peer's fault).
//   - A down owner's spans are read from the origin by each reader, not moved to the
//     next member: a member is usually down for a restart, and moving its spans
//     would fill a second copy elsewhere that is dropped again when it returns.
//   - --peer-copy owner keeps only owned spans (cache.Keeper): the others are read
//     through uncached, as when the cache has no room. Default local: hot data near
//     readers, at the cost of a copy per member that reads it.
//   - Members come from a list every member is given (self found by --advertise) or
//     from the A/AAAA records of a dns+http://NAME:PORT, looked up every 30 s (a
//     Kubernetes headless service); a failed lookup keeps the members known.
//
// Bytes from a peer are checked as origin bytes are: the cache writes them with a
// CRC per chunk, and every request names the version. A peer is trusted to send the
// bytes of the version it says (it holds the same token): the group is one
// administrative domain.
package peer
