package cache

import "time"

// scrub re-hashes the chunks of idle objects (no handle open) every VerifyInterval,
// so that corruption of a cached file is found even where stat cannot tell (a disk
// that corrupts in place, a writer that restores the timestamps, or a write that
// landed next to one of ours in a partly cached object). It reads one chunk at a time
// and sleeps between chunks so as to read at most ScrubRate bytes per second; a pass
// that takes longer than the interval is followed by the next one at once. Bad chunks
// leave the bitmap (refetched on the next read).
func (c *Cache) scrub() {
	defer close(c.scrubDone)
	t := time.NewTimer(c.opts.VerifyInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stopScrub:
			return
		case <-t.C:
		}
		if !c.scrubPass() {
			return
		}
		t.Reset(c.opts.VerifyInterval)
	}
}

// scrubPass scrubs every object that is idle and holds chunks now. It returns false when
// the cache is closing.
func (c *Cache) scrubPass() bool {
	c.mu.Lock()
	var all []*object
	for _, o := range c.idx.objects {
		if o.refs == 0 && o.presentChunks > 0 {
			all = append(all, o)
		}
	}
	c.mu.Unlock()
	bad := 0
	for _, o := range all {
		n, ok := c.scrubObject(o)
		bad += n
		if !ok {
			return false
		}
	}
	c.log.Debug("scrub pass done", "objects", len(all), "bad_chunks", bad)
	return true
}

// scrubObject re-hashes o's present chunks unless a reader opened it meanwhile, and
// returns the bad ones it dropped, and false when the cache is closing.
func (c *Cache) scrubObject(o *object) (int, bool) {
	c.mu.Lock()
	if o.removed || o.refs > 0 {
		c.mu.Unlock()
		return 0, true
	}
	o.refs++ // keeps the files open and the object from being evicted meanwhile
	c.mu.Unlock()
	defer c.release(o)
	o.mu.Lock()
	err := o.openFilesVerify(false)
	o.mu.Unlock()
	if err != nil {
		c.log.Debug("scrub: cannot open a cache object", "path", o.Path, "err", err)
		return 0, true
	}
	buf := getBuf(o.ChunkSize)
	defer putBuf(buf)
	pause := time.NewTimer(0)
	defer pause.Stop()
	bad := 0
	for i := 0; i < o.nchunks; i++ {
		select {
		case <-c.stopScrub:
			return bad, false
		case <-pause.C:
		}
		n := o.chunkLen(i)
		o.mu.Lock() // per chunk, so readers of the object wait one chunk at most
		if o.checkChunk(i, (*buf)[:n]) {
			bad++
		}
		o.mu.Unlock()
		pause.Reset(time.Duration(float64(n) / float64(c.opts.ScrubRate) * float64(time.Second)))
	}
	return bad, true
}
