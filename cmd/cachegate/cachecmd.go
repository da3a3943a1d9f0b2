package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/alecthomas/kong"
	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/registry"
	"github.com/cachegate/cachegate/internal/units"
	"golang.org/x/sys/unix"
	"golang.org/x/text/width"
)

// ownerFile records, in the cache directory, what its last owner served, so that the
// cache verbs work when no owner runs.
const ownerFile = "owner.json"

type ownerInfo struct {
	Origin    string `json:"origin"`
	CacheSize int64  `json:"cache_size"`
	ChunkSize int64  `json:"chunk_size"`
	// Config is the config file of the daemon that owned the dir (its Origin is "").
	Config string `json:"config,omitempty"`
	// Routes are that daemon's origins: name -> the origin as it names itself, so
	// that the next start forgets the metadata of a name that now leads elsewhere.
	Routes map[string]string `json:"routes,omitempty"`
}

// writeOwnerInfo replaces dir's owner.json through a new temporary file: a leftover
// (or a planted symlink) is removed, never written through.
func writeOwnerInfo(dir string, info ownerInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ownerFile+".tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write %s: %w", ownerFile, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", ownerFile, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, ownerFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", ownerFile, err)
	}
	return nil
}

// readOwnerInfo reads dir's owner.json (not through a symlink); zero when there is
// none or it cannot be read.
func readOwnerInfo(dir string) ownerInfo {
	var info ownerInfo
	f, err := os.OpenFile(filepath.Join(dir, ownerFile), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return info
	}
	defer f.Close()
	json.NewDecoder(io.LimitReader(f, 64<<10)).Decode(&info)
	return info
}

// cacheVerbFlags are shared by the `cache` verbs and `status`.
type cacheVerbFlags struct {
	CacheDir string `group:"cache" help:"Cache directory (default: that of the mount holding a PATH given, else of the one cachegate running, else ${default_cache_dir})." placeholder:"DIR"`
	JSON     bool   `env:"-" help:"Print JSON (stable fields, for scripts)."`
}

// session is a client of the cache's owner. When no cachegate owns the cache, the
// command becomes its owner for its own duration: it opens the cache under its lock
// and serves the control API itself, so every verb is written once, against the API.
type session struct {
	client *control.Client
	dir    string          // the cache dir
	c      *cache.Cache    // the cache this command opened, when it had no owner
	ctl    *control.Server // ...and the control API it serves meanwhile
}

func (s *session) close() {
	if s.ctl != nil {
		s.ctl.Close()
	}
	if s.c != nil {
		s.c.Close()
	}
}

// openSession talks to the owner of the cache dir (see cacheDirFor: dir is the
// --cache-dir flag, args the PATH arguments), or opens the cache itself when none runs.
func openSession(dir, originFlag string, args ...string) (*session, error) {
	flagged := dir != ""
	dir, err := cacheDirFor(dir, args)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if !flagged {
			return nil, usagef("no cachegate is running and the default cache dir %s does not exist: give --cache-dir", dir)
		}
		return nil, usagef("cache dir %s does not exist (see --cache-dir)", dir)
	}
	cl, err := control.Dial(dir)
	if err == nil {
		return &session{client: cl, dir: dir}, nil
	}
	if !errors.Is(err, control.ErrNoOwner) {
		return nil, err
	}
	info := readOwnerInfo(dir)
	if originFlag != "" {
		info.Origin = originFlag
	}
	if info.Origin == "" && info.Config != "" {
		return nil, usagef("%s is the cache of cachegate daemon --config %s, which is not running: start it, or give --origin ORIGIN to work on one origin's objects", dir, info.Config)
	}
	if info.Origin == "" {
		return nil, usagef("no cachegate has used %s yet and no --origin was given", dir)
	}
	hideCredentials(info.Origin)
	o, err := origin.New(info.Origin, origin.Options{Timeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	if info.CacheSize <= 0 {
		info.CacheSize = 10 << 30
	}
	log := slog.New(scrubHandler{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})})
	c, err := cache.Open(o, cache.Options{Dir: dir, Limit: info.CacheSize, ChunkSize: info.ChunkSize, Logger: log})
	if err != nil {
		return nil, err
	}
	s := &session{c: c, dir: dir}
	if s.ctl, err = control.Listen(c, nil, log); err == nil {
		s.client, err = control.Dial(dir)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// resolvePath turns a PATH argument into an origin path: an absolute path inside a
// running cachegate mount loses the mount point; anything else is an origin path with
// an optional leading slash. flagDir is --cache-dir ("": none given).
func resolvePath(flagDir, arg string) (string, error) {
	if filepath.IsAbs(arg) {
		if mp := cachegateMountOf(arg); mp != "" {
			rel, _ := filepath.Rel(mp, filepath.Clean(arg))
			if rel == "." {
				rel = ""
			}
			// A daemon's mount shows its origin's NAME/ of the daemon's cache.
			if e, ok := registry.ByMountpoint(liveInstances(), mp); ok && e.Root != "" {
				rel = e.Root + "/" + rel
			}
			return origin.Clean(rel)
		}
	}
	if name, rest, ok := daemonPath(arg, flagDir, liveInstances()); ok {
		arg = name + "/" + rest
	}
	p, err := origin.Clean(arg)
	if err != nil {
		return "", usagef("%v", err)
	}
	return p, nil
}

// daemonPathRE is NAME:PATH, a path of origin NAME of a daemon's cache.
var daemonPathRE = regexp.MustCompile(`^([a-z0-9_][a-z0-9_-]{0,63}):(.*)$`) // origin.ValidRouteName

// daemonPath splits NAME:PATH. It is read so only while a daemon runs (among live)
// and, when --cache-dir names the cache (flagDir), only when that is a daemon's, so
// that a path with a colon in a single-origin cache keeps its meaning.
func daemonPath(arg, flagDir string, live []registry.Entry) (name, rest string, ok bool) {
	m := daemonPathRE.FindStringSubmatch(arg)
	if m == nil {
		return "", "", false
	}
	if flagDir != "" {
		flagDir = realPath(flagDir)
	}
	for _, e := range live {
		if e.Command == "daemon" && (flagDir == "" || e.CacheDir == flagDir) {
			return m[1], m[2], true
		}
	}
	return "", "", false
}

// cachegateMountOf returns the mount point of the cachegate mount holding path.
func cachegateMountOf(path string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	best := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		for i := range f {
			if f[i] == "-" && i+1 < len(f) && f[i+1] == cachegateFSType && len(f) > 4 {
				mp := unescapeMountinfo(f[4])
				if (path == mp || strings.HasPrefix(path, mp+"/")) && len(mp) > len(best) {
					best = mp
				}
			}
		}
	}
	return best
}

// sessionFor resolves one PATH argument and opens the session for dir.
func sessionFor(dir, arg string) (*session, string, error) {
	p, err := resolvePath(dir, arg)
	if err != nil {
		return nil, "", err
	}
	s, err := openSession(dir, "", arg)
	return s, p, err
}

func resolvePaths(flagDir string, args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, a := range args {
		p, err := resolvePath(flagDir, a)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

type cacheCmd struct {
	Ls     cacheLsCmd     `cmd:"" help:"List cached objects under PREFIX: path (from the origin's root, as in --json), size, cached %, pinned, last access."`
	Stat   cacheStatCmd   `cmd:"" help:"Show one cached object in detail."`
	Warm   cacheWarmCmd   `cmd:"" help:"Fetch files (directories recursively) into the cache (a --peer-copy owner member keeps the spans it owns and reads the others through, so their owners keep them)."`
	Pin    cachePinCmd    `cmd:"" help:"Warm and pin files: pinned objects survive restarts and are never evicted (a --peer-copy owner member pins the spans it owns and warms the others on their owners)."`
	Unpin  cacheUnpinCmd  `cmd:"" help:"Remove pins."`
	Evict  cacheEvictCmd  `cmd:"" help:"Drop files from the cache (open readers keep reading; new reads refetch)."`
	Verify cacheVerifyCmd `cmd:"" help:"Re-hash every cached chunk, report bad ones and drop them (refetched on the next read; --repair refetches them now)."`
	Gc     cacheGcCmd     `cmd:"" name:"gc" help:"Evict least recently used objects down to a size."`
	Clear  cacheClearCmd  `cmd:"" help:"Remove everything from the cache, pins included."`
}

type cacheLsCmd struct {
	Prefix     string `arg:"" optional:"" help:"Origin path prefix, or a path inside a mount. With one, every file of the origin under it is listed, cached or not."`
	CachedOnly bool   `env:"-" help:"List only what is cached, without asking the origin."`
	All        bool   `env:"-" help:"List what is cached of every origin this cache dir holds (e.g. filled by cache warm --origin), with an ORIGIN column; implies --cached-only."`
	cacheVerbFlags
}

func (c *cacheLsCmd) Run() error {
	s, prefix, err := sessionFor(c.CacheDir, c.Prefix)
	if err != nil {
		return err
	}
	defer s.close()
	walk := c.Prefix != "" && !c.CachedOnly && !c.All
	var objs []cache.ObjectInfo
	q := url.Values{"prefix": {prefix}}
	if walk {
		q.Set("origin", "1")
	}
	if c.All {
		q.Set("all", "1")
	}
	if err := s.client.Get(verbURL("/v1/objects", q), &objs); err != nil {
		return notFoundHint(err, prefix)
	}
	if c.JSON {
		if objs == nil {
			objs = []cache.ObjectInfo{}
		}
		return printJSON(objs)
	}
	return writeTable(os.Stdout, lsRows(objs, c.All))
}

type cacheStatCmd struct {
	Path string `arg:"" help:"Origin path, or a path inside a mount."`
	cacheVerbFlags
}

func (c *cacheStatCmd) Run() error {
	s, p, err := sessionFor(c.CacheDir, c.Path)
	if err != nil {
		return err
	}
	defer s.close()
	var info cache.ObjectInfo
	err = s.client.Get(verbURL("/v1/object", url.Values{"path": {p}}), &info)
	if errors.Is(err, cache.ErrNotCached) {
		// Nothing cached at p itself: a directory (the root too) or a file not cached.
		if sum, ok := dirSummaryOf(s.client, p); ok {
			return sum.print(c.JSON)
		}
	}
	if err != nil {
		return notFoundHint(err, p)
	}
	if c.JSON {
		return printJSON(info)
	}
	fmt.Printf("path:          /%s\norigin:        %s\nversion:       %s\nsize:          %s (%d bytes)\ncached:        %s in %d of %d chunks of %s\ncomplete:      %v\npinned:        %v\nlast access:   %s\nopen handles:  %d\ndata file:     %s\n",
		info.Path, control.Redact(info.Origin), info.Version, units.FormatSize(info.Size), info.Size, units.FormatSize(info.CachedBytes),
		info.ChunksPresent, info.Chunks, units.FormatSize(info.ChunkSize), info.Complete, info.Pinned,
		info.LastAccess.Local().Format(time.RFC3339), info.OpenHandles, info.DataFile)
	return nil
}

// dirSummary is what `cache stat` shows of a directory: what the origin has under it
// and how much of that is cached.
type dirSummary struct {
	Path        string `json:"path"`
	Dir         bool   `json:"dir"` // always true: tells it from an object's stat
	Files       int    `json:"files"`
	Size        int64  `json:"size"`
	CachedBytes int64  `json:"cached_bytes"`
	Complete    int    `json:"complete"` // files cached whole
	Pinned      int    `json:"pinned"`   // files pinned
	// OriginUnreachable: the origin could not be listed, so only what is cached is
	// counted.
	OriginUnreachable bool `json:"origin_unreachable,omitempty"`
}

// dirSummaryOf sums up directory p, as `cache ls p` lists it; ok is false when p is
// a file. When the origin cannot be listed, the cached objects under p are summed.
func dirSummaryOf(cl *control.Client, p string) (dirSummary, bool) {
	sum := dirSummary{Path: p, Dir: true}
	var objs []cache.ObjectInfo
	if err := cl.Get(verbURL("/v1/objects", url.Values{"prefix": {p}, "origin": {"1"}}), &objs); err != nil {
		sum.OriginUnreachable = true
		if err := cl.Get(verbURL("/v1/objects", url.Values{"prefix": {p}}), &objs); err != nil || len(objs) == 0 {
			return dirSummary{}, false
		}
	}
	for _, o := range objs {
		if o.Path == p {
			return dirSummary{}, false // p is a file
		}
		sum.Files++
		sum.Size += o.Size
		sum.CachedBytes += o.CachedBytes
		if o.Complete {
			sum.Complete++
		}
		if o.Pinned {
			sum.Pinned++
		}
	}
	return sum, true
}

func (d dirSummary) print(asJSON bool) error {
	if asJSON {
		return printJSON(d)
	}
	plural := func(n int) string {
		if n == 1 {
			return "1 file"
		}
		return fmt.Sprintf("%d files", n)
	}
	fmt.Printf("path:          /%s\ntype:          directory\nfiles:         %d\nsize:          %s (%d bytes)\ncached:        %s (%d bytes)\ncomplete:      %s\npinned:        %s\n",
		d.Path, d.Files, units.FormatSize(d.Size), d.Size, units.FormatSize(d.CachedBytes), d.CachedBytes, plural(d.Complete), plural(d.Pinned))
	if d.OriginUnreachable {
		fmt.Println("note:          the origin could not be listed: only cached files are counted")
	}
	return nil
}

// notFoundHint says what to do about a path (p) that is not in the origin or not
// cached.
func notFoundHint(err error, p string) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("/%s: not in the origin (check the path)", p)
	case errors.Is(err, cache.ErrNotCached):
		return fmt.Errorf("%v (it exists in the origin; cachegate cache warm fetches it)", err)
	}
	return err
}

// warmArgs are the arguments of warm and pin.
type warmArgs struct {
	Paths          []string `arg:"" optional:"" help:"Files or directories (origin paths or paths inside a mount)."`
	From           string   `env:"-" help:"Also the origin paths listed in FILE ('-': stdin), one a line as a dataset manifest lists them ('#' comments, blank lines skipped); a path the origin lacks is named and the rest warmed (exit 1)." placeholder:"FILE"`
	Parallel       int      `env:"-" help:"Files fetched at once: 1 to 64 (default: ${default})." default:"4" placeholder:"N"`
	cacheVerbFlags          // before --origin: the flag groups in flagGroups' order
	Origin         string   `env:"-" group:"origin" help:"Origin to use when no cachegate owns the cache dir (default: the last owner's)." placeholder:"ORIGIN"`
	BWLimit        Rate     `group:"origin" name:"bwlimit" help:"Most bytes per second this warm reads from the origin, e.g. 50MiB, 500k, 1.5M; 0: no limit (the owner's own --bwlimit applies as well)." placeholder:"RATE"`
}

type cacheWarmCmd struct{ warmArgs }

func (c *cacheWarmCmd) Run() error { return warmOrPin(c.warmArgs, false) }

type cachePinCmd struct{ warmArgs }

func (c *cachePinCmd) Run() error { return warmOrPin(c.warmArgs, true) }

func warmOrPin(a warmArgs, pin bool) error {
	f, parallel := a.cacheVerbFlags, a.Parallel
	if parallel < 1 || parallel > control.MaxParallel {
		return usagef("--parallel %d is out of range: use 1 to %d", parallel, control.MaxParallel)
	}
	if len(a.Paths) == 0 && a.From == "" {
		return usagef("name what to warm: PATH arguments, --from FILE, or both")
	}
	paths, err := resolvePaths(f.CacheDir, a.Paths)
	if err != nil {
		return err
	}
	list := newPathList(strings.NewReader(""), "")
	if a.From != "" {
		l, closeList, err := openList(a.From)
		if err != nil {
			return err
		}
		defer closeList()
		list = l
	}
	// The first batch is read before anything starts, so a bad list is refused
	// before the cache is touched when it fits one request (later batches' bad
	// lines stop the warm where they are found).
	list.queue = paths
	batch, err := list.batch()
	if err != nil {
		return err
	}
	if len(batch) == 0 {
		return usagef("%s lists no paths", list.name)
	}
	if a.Origin != "" {
		if a.Origin, err = originSpec(a.Origin); err != nil {
			return err
		}
		// Filling a new cache from a named origin (to ship it, or before the first
		// mount): make the directory. The other verbs refuse one that does not
		// exist, which is a typo there.
		if err := os.MkdirAll(f.CacheDir, 0o700); f.CacheDir != "" && err != nil {
			return fmt.Errorf("create cache dir: %v", err)
		}
	}
	s, err := openSession(f.CacheDir, a.Origin, a.Paths...)
	if err != nil {
		return err
	}
	defer s.close()
	if s.c != nil && a.Origin != "" && readOwnerInfo(f.CacheDir).Origin == "" {
		// The first to fill this cache: the verbs that follow use its origin.
		if err := writeOwnerInfo(f.CacheDir, ownerInfo{Origin: a.Origin}); err != nil {
			fmt.Fprintln(os.Stderr, "cachegate: warning:", err)
		}
	}
	bar := newProgressBar(!f.JSON)
	verb, done := "/v1/warm", "warmed"
	if pin {
		verb, done = "/v1/pin", "pinned"
	}
	// One request per batch (a list longer than one request carries), one bar and
	// one summary over them all. A batch's missing paths or failed files do not stop
	// the next; any other error (the owner gone, the origin down) does.
	var total cache.WarmProgress
	for len(batch) > 0 {
		line, err := s.client.Stream(verb, control.Request{Paths: batch, Parallel: parallel, BWLimit: int64(a.BWLimit)},
			func(l control.ProgressLine) { bar.update(sumProgress(total, l.Progress)) })
		total = sumProgress(total, line.Progress)
		// Missing paths and failed files are in total, said at the end.
		if err == nil && line.Error != "" && !line.NotFound && line.Progress.Failed == 0 {
			err = errors.New(line.Error)
		}
		if err == nil {
			batch, err = list.batch()
			if err != nil {
				err = fmt.Errorf("%w (the paths before it were warmed)", err)
			}
		}
		if err != nil {
			bar.done(total)
			reportMissing(total, done)
			return err
		}
	}
	bar.done(total)
	if f.JSON {
		if err := printJSON(total); err != nil {
			return err
		}
	}
	if err := reportMissing(total, done); err != nil {
		return err
	}
	if total.Failed > 0 {
		return fmt.Errorf("%d of %d files could not be warmed; first: %s", total.Failed, total.Files, total.FirstError)
	}
	if f.JSON {
		return nil
	}
	notKept := ""
	if total.NotKept > 0 {
		notKept = fmt.Sprintf("; %s of it warmed on the peers that own it, not kept here", units.FormatSize(total.NotKept))
	}
	fmt.Printf("%s %s, %s (%s fetched from the origin%s)\n", done, plural(total.Files, "file"), units.FormatSize(total.Bytes), units.FormatSize(total.Fetched), notKept)
	return nil
}

// reportMissing names each path of a warm that the origin lacks on stderr, one a
// line, and returns the error that ends the command (nil when none is missing). A
// lone missing path of a warm that warmed nothing else is said once, as the error.
func reportMissing(total cache.WarmProgress, done string) error {
	m, count := total.Missing, max(total.MissingCount, len(total.Missing))
	switch {
	case count == 0:
		return nil
	case count == 1 && len(m) == 1 && total.Files == 0:
		return fmt.Errorf("/%s: not in the origin (check the path)", m[0])
	}
	for _, p := range m {
		fmt.Fprintf(os.Stderr, "cachegate: /%s: not in the origin (check the path)\n", p)
	}
	named := "named above"
	if count > len(m) {
		named = fmt.Sprintf("the first %d named above", len(m))
	}
	return fmt.Errorf("%s not in the origin (%s); %s %s", plural(count, "path"), named, plural(total.FilesDone-total.Failed, "file"), done)
}

type cacheUnpinCmd struct {
	Paths []string `arg:"" help:"Pinned files or directories (origin paths or paths inside a mount); a directory unpins everything under it."`
	cacheVerbFlags
}

func (c *cacheUnpinCmd) Run() error {
	return simpleVerb(c.Paths, c.cacheVerbFlags, control.Request{}, "/v1/unpin", "unpinned")
}

type cacheEvictCmd struct {
	Paths []string `arg:"" help:"Cached files or directories (origin paths or paths inside a mount); a directory evicts everything under it."`
	Force bool     `env:"-" help:"Evict pinned files too (their pins go with them)."`
	cacheVerbFlags
}

func (c *cacheEvictCmd) Run() error {
	return simpleVerb(c.Paths, c.cacheVerbFlags, control.Request{Force: c.Force}, "/v1/evict", "evicted")
}

// simpleVerb runs a per-path verb that answers with a count of objects.
// A path with nothing cached, or (evict) a pinned one, fails the whole request.
func simpleVerb(args []string, f cacheVerbFlags, req control.Request, verb, done string) error {
	paths, err := resolvePaths(f.CacheDir, args)
	if err != nil {
		return err
	}
	s, err := openSession(f.CacheDir, "", args...)
	if err != nil {
		return err
	}
	defer s.close()
	var res struct {
		Objects int `json:"objects"`
	}
	req.Paths = paths
	if err := s.client.Post(verb, req, &res); err != nil {
		return err
	}
	if f.JSON {
		return printJSON(res)
	}
	fmt.Printf("%s %s\n", done, plural(res.Objects, "object"))
	return nil
}

type cacheVerifyCmd struct {
	Repair bool `env:"-" help:"Also refetch bad chunks now (they are dropped either way, so the next read refetches them)."`
	cacheVerbFlags
}

func (c *cacheVerifyCmd) Run() error {
	s, err := openSession(c.CacheDir, "")
	if err != nil {
		return err
	}
	defer s.close()
	var res cache.VerifyResult
	if err := s.client.Post("/v1/verify", control.Request{Repair: c.Repair}, &res); err != nil {
		return err
	}
	if res.Bad == nil {
		res.Bad = []cache.BadChunk{}
	}
	if c.JSON {
		if err := printJSON(res); err != nil {
			return err
		}
	} else {
		for _, b := range res.Bad {
			fmt.Printf("BAD /%s chunk %d\n", b.Path, b.Chunk)
		}
		for _, u := range res.Unreadable {
			fmt.Printf("UNREADABLE /%s: %s (dropped; the next read fetches it again)\n", u.Path, u.Error)
		}
		fmt.Printf("checked %d objects, %d chunks: %d bad", res.Objects, res.Chunks, len(res.Bad))
		if len(res.Unreadable) > 0 {
			fmt.Printf(", %d unreadable objects", len(res.Unreadable))
		}
		switch {
		case c.Repair && len(res.Bad) > 0:
			fmt.Printf(", dropped; %d refetched now (the rest on their next read)", res.Refetched)
		case len(res.Bad) > 0:
			fmt.Print(", dropped (the next read refetches them)")
		}
		fmt.Println()
	}
	if len(res.Bad) > 0 && !c.Repair {
		return errors.New("bad chunks found and dropped: they are never served; cachegate cache verify --repair refetches them now (a disk that keeps corrupting data needs checking)")
	}
	if len(res.Unreadable) > 0 {
		return errors.New("unreadable cache objects found and dropped: the next read fetches them again (damaged files in the cache dir: check the disk, and what else writes there)")
	}
	return nil
}

type cacheGcCmd struct {
	To optionalSize `env:"-" help:"Evict down to this size; 0 evicts everything but pinned and open files (default: half of the cache's limit)." placeholder:"SIZE"`
	cacheVerbFlags
}

func (c *cacheGcCmd) Run() error {
	s, err := openSession(c.CacheDir, "")
	if err != nil {
		return err
	}
	defer s.close()
	to := int64(c.To.Size)
	var res struct {
		Freed   int64 `json:"freed_bytes"`
		Objects int   `json:"objects"`
	}
	if !c.To.set {
		var st control.Status
		if err := s.client.Get("/v1/status", &st); err != nil {
			return err
		}
		to = st.Cache.LimitBytes / 2
	}
	if err := s.client.Post("/v1/gc", control.Request{To: to}, &res); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(res)
	}
	fmt.Printf("freed %s in %s\n", units.FormatSize(res.Freed), plural(res.Objects, "object"))
	return nil
}

// optionalSize is a size flag that tells "not given" from 0.
type optionalSize struct {
	Size
	set bool
}

// Decode overrides Size's (which kong would call through the embedding, never
// setting set).
func (s *optionalSize) Decode(ctx *kong.DecodeContext) error {
	s.set = true
	return s.Size.Decode(ctx)
}

type cacheClearCmd struct {
	Yes bool `env:"-" help:"Do not ask."`
	cacheVerbFlags
}

func (c *cacheClearCmd) Run() error {
	dir, err := cacheDirFor(c.CacheDir, nil)
	if err != nil {
		return err
	}
	if !c.Yes {
		if !isTerminal(os.Stdin) {
			return usagef("refusing to clear %s without --yes (stdin is not a terminal)", dir)
		}
		fmt.Printf("Remove everything cached in %s, pins included? [y/N] ", dir)
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return errors.New("not cleared")
		}
	}
	s, err := openSession(dir, "")
	if err != nil {
		return err
	}
	defer s.close()
	var res struct {
		Objects int `json:"objects"`
	}
	if err := s.client.Post("/v1/clear", control.Request{}, &res); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(res)
	}
	fmt.Printf("cleared %s\n", plural(res.Objects, "object"))
	return nil
}

type statusCmd struct {
	CacheDir string `group:"cache" help:"Show this cache's use, hits and misses (default: list the running cachegate instances)." placeholder:"DIR"`
	JSON     bool   `env:"-" help:"Print JSON (stable fields, for scripts)."`
}

func (c *statusCmd) Run() error {
	if c.CacheDir == "" {
		return printInstances(c.JSON)
	}
	s, err := openSession(c.CacheDir, "")
	if err != nil {
		return err
	}
	defer s.close()
	var st control.Status
	if err := s.client.Get("/v1/status", &st); err != nil {
		return err
	}
	if s.c != nil {
		st.Pid = 0 // nobody owns it; this command opened it
	}
	if c.JSON {
		return printJSON(st)
	}
	owner := "none (opened directly)"
	if st.Pid != 0 {
		owner = fmt.Sprintf("pid %d", st.Pid)
	}
	fmt.Printf("cache dir:   %s (owner: %s)\norigin:      %s\nused:        %s of %s in %s%s\nreads:       %d hits, %d misses, %s fetched from the origin\n",
		c.CacheDir, owner, st.Origin.URL, units.FormatSize(st.Cache.UsedBytes), units.FormatSize(st.Cache.LimitBytes), plural(st.Cache.Objects, "object"),
		byOrigin(st), st.Cache.Hits, st.Cache.Misses, units.FormatSize(st.Origin.BytesFetched))
	if len(st.Origins) > 0 {
		names := make([]string, 0, len(st.Origins))
		for n := range st.Origins {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			o := st.Origins[n]
			fmt.Printf("  %-10s %s: %s cached in %s (%d pinned), %s fetched\n", n+":", o.URL, units.FormatSize(o.CachedBytes), plural(o.Objects, "object"), o.Pinned, units.FormatSize(o.BytesFetched))
		}
	}
	if st.Serve.Listen != "" {
		b := st.Serve.BytesByTransfer
		fmt.Printf("server:      %s, %d requests, %d connections; sent %s by sendfile, %s by mmap, %s by copy\n",
			st.Serve.Listen, st.Serve.Requests, st.Serve.Connections, units.FormatSize(b["sendfile"]), units.FormatSize(b["mmap"]), units.FormatSize(b["copy"]))
	}
	for _, p := range st.Serve.Peers {
		state := p.State + " since " + p.Since.Local().Format(time.DateTime)
		if p.Self {
			state = "this member"
		} else if p.Error != "" {
			state += " (" + p.Error + ")"
		}
		fmt.Printf("peer:        %s %s; asked %d times for %s (%d errors, %d read from the origin instead); asked us %d times for %s\n",
			p.URL, state, p.Requests, units.FormatSize(p.Bytes), p.Errors, p.Fallbacks, p.ServedRequests, units.FormatSize(p.ServedBytes))
	}
	return nil
}

// byOrigin is status's split of the object count when other origins than the
// owner's left objects in the cache dir: " (5 of http://a/, 1 of /srv/b: cache ls --all)".
func byOrigin(st control.Status) string {
	if len(st.Origins) > 0 {
		return "" // a daemon's: listed per origin below
	}
	if len(st.ObjectsByOrigin) == 0 || len(st.ObjectsByOrigin) == 1 && st.ObjectsByOrigin[st.Origin.URL] > 0 {
		return ""
	}
	names := make([]string, 0, len(st.ObjectsByOrigin))
	for o := range st.ObjectsByOrigin {
		names = append(names, o)
	}
	slices.Sort(names)
	// The owner's origin first.
	if i := slices.Index(names, st.Origin.URL); i > 0 {
		names = append(append([]string{st.Origin.URL}, names[:i]...), names[i+1:]...)
	}
	parts := make([]string, len(names))
	for i, o := range names {
		parts[i] = fmt.Sprintf("%d of %s", st.ObjectsByOrigin[o], o)
	}
	return " (" + strings.Join(parts, ", ") + "; cache ls --all lists them)"
}

// verbURL is a control verb's URL with its parameters escaped by net/url: a
// hand-made escaper left ';' as is, which net/url's parser refuses, so `cache stat
// 'a;b'` asked about the path "".
func verbURL(verb string, params url.Values) string {
	return verb + "?" + params.Encode()
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressBar draws warm progress on a terminal (stderr), or nothing elsewhere.
type progressBar struct {
	on    bool
	start time.Time
	last  time.Time
}

func newProgressBar(enabled bool) *progressBar {
	return &progressBar{on: enabled && isTerminal(os.Stderr), start: time.Now()}
}

func (b *progressBar) update(p cache.WarmProgress) {
	if !b.on || time.Since(b.last) < 100*time.Millisecond {
		return
	}
	b.last = time.Now()
	b.draw(p)
}

func (b *progressBar) draw(p cache.WarmProgress) {
	fmt.Fprint(os.Stderr, "\r"+progressText(p, time.Since(b.start)))
}

// progressText is the progress line of p, elapsed after the start.
func progressText(p cache.WarmProgress, elapsed time.Duration) string {
	frac := 1.0
	if p.Bytes > 0 {
		frac = min(float64(p.BytesDone)/float64(p.Bytes), 1)
	}
	const width = 30
	filled := int(frac * width)
	el := elapsed.Seconds()
	rate := float64(p.BytesDone) / max(el, 0.001)
	eta := "-"
	if rate > 0 && p.Bytes > p.BytesDone {
		secs := float64(p.Bytes-p.BytesDone) / rate
		eta = time.Duration(min(secs, 1e6) * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s%s] %3.0f%%  %s / %s  %s/s  ETA %s  files %d/%d ",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), 100*frac,
		units.FormatSize(p.BytesDone), units.FormatSize(p.Bytes), units.FormatSize(int64(rate)), eta, p.FilesDone, p.Files)
}

func (b *progressBar) done(p cache.WarmProgress) {
	if b.on {
		b.draw(p)
		fmt.Fprintln(os.Stderr)
	}
}

// plural is "1 object", "2 objects".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// writeTable writes rows as columns two spaces apart, measuring cells by their width
// on a terminal (text/tabwriter counts runes, so a CJK name shifted the columns after
// it). The last column is not padded.
func writeTable(w io.Writer, rows [][]string) error {
	var widths []int
	for _, r := range rows {
		for i, cell := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], displayWidth(cell))
		}
	}
	bw := bufio.NewWriter(w)
	for _, r := range rows {
		for i, cell := range r {
			bw.WriteString(cell)
			if i < len(r)-1 {
				bw.WriteString(strings.Repeat(" ", widths[i]-displayWidth(cell)+2))
			}
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// displayWidth is how many terminal columns s takes: East Asian wide and fullwidth
// characters take two, combining marks and other zero-width characters none.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || unicode.Is(unicode.Cf, r):
		case width.LookupRune(r).Kind() == width.EastAsianWide || width.LookupRune(r).Kind() == width.EastAsianFullwidth:
			n += 2
		default:
			n++
		}
	}
	return n
}

// lsRows is cache ls's table: paths as in its JSON, relative to the origin's root;
// withOrigin adds each object's origin (cache ls --all).
func lsRows(objs []cache.ObjectInfo, withOrigin bool) [][]string {
	head := []string{"PATH", "SIZE", "CACHED", "PINNED", "LAST ACCESS"}
	if withOrigin {
		head = append(head, "ORIGIN")
	}
	rows := [][]string{head}
	for _, o := range objs {
		pct := 100.0
		if o.Size > 0 {
			pct = 100 * float64(o.CachedBytes) / float64(o.Size)
		}
		pin := "-"
		if o.Pinned {
			pin = "pinned"
		}
		last := "-"
		if !o.LastAccess.IsZero() {
			last = o.LastAccess.Local().Format("2006-01-02 15:04:05")
		}
		path := o.Path
		if path == "" {
			path = "."
		}
		r := []string{path, units.FormatSize(o.Size), fmt.Sprintf("%.0f%%", pct), pin, last}
		if withOrigin {
			r = append(r, control.Redact(o.Origin))
		}
		rows = append(rows, r)
	}
	return rows
}
