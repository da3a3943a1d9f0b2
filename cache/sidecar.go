package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Sidecar layout (little endian). The header is immutable after creation except for
// the flags and last-access words, so its CRC covers everything else.
//
//	0  magic      [8]byte "CGSIDE01"
//	8  headerLen  uint32  bytes before the bitmap, a multiple of 8
//	12 flags      uint32  bit 0: pinned            (mutable)
//	16 chunkSize  uint64
//	24 size       uint64  object size in bytes
//	32 nchunks    uint64
//	40 lastAccess int64   unix nanoseconds          (mutable)
//	48 originLen  uint32
//	52 pathLen    uint32
//	56 modTime    int64   unix nanoseconds
//	64 versionLen uint32
//	68 headerCRC  uint32  CRC32C of bytes 0-11, 16-39, 48-67 and the strings
//	72 origin, path, version bytes, zero-padded to headerLen
//	headerLen: bitmap, one bit per chunk, in uint64 words
//	then:      CRC32C of each chunk, uint32 each
const (
	sidecarMagic  = "CGSIDE01"
	fixedHeader   = 72
	flagPinned    = 1
	maxStringsLen = 64 << 10
	// maxChunks bounds a sidecar to a sane size (1 TiB object at 1 MiB chunks).
	maxChunks = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// objectInfo is what a sidecar header says about its object.
type objectInfo struct {
	Origin, Path, Version string
	Size                  int64
	ModTime               time.Time
	ChunkSize             int64
	Pinned                bool
	LastAccess            time.Time
}

func (i *objectInfo) nchunks() int {
	if i.Size == 0 {
		return 0
	}
	return int((i.Size + i.ChunkSize - 1) / i.ChunkSize)
}

func align8(n int) int { return (n + 7) &^ 7 }

func bitmapWords(n int) int { return (n + 63) / 64 }

// sidecarSize is the file size of a sidecar with the given header length and chunks.
func sidecarSize(headerLen, nchunks int) int {
	return headerLen + 8*bitmapWords(nchunks) + 4*nchunks
}

// encodeHeader returns a new sidecar's full contents: header, empty bitmap, zero CRCs.
func encodeHeader(info *objectInfo) ([]byte, error) {
	sl := len(info.Origin) + len(info.Path) + len(info.Version)
	if sl > maxStringsLen {
		return nil, fmt.Errorf("object name too long for the cache (%d bytes)", sl)
	}
	if info.ChunkSize <= 0 || info.Size < 0 {
		return nil, fmt.Errorf("bad object geometry: size %d chunk %d", info.Size, info.ChunkSize)
	}
	n := info.nchunks()
	if n > maxChunks {
		return nil, fmt.Errorf("object of %d bytes needs %d chunks, more than %d: use a larger --chunk-size", info.Size, n, maxChunks)
	}
	hl := align8(fixedHeader + sl)
	b := make([]byte, sidecarSize(hl, n))
	le := binary.LittleEndian
	copy(b, sidecarMagic)
	le.PutUint32(b[8:], uint32(hl))
	var flags uint32
	if info.Pinned {
		flags |= flagPinned
	}
	le.PutUint32(b[12:], flags)
	le.PutUint64(b[16:], uint64(info.ChunkSize))
	le.PutUint64(b[24:], uint64(info.Size))
	le.PutUint64(b[32:], uint64(n))
	le.PutUint64(b[40:], uint64(info.LastAccess.UnixNano()))
	le.PutUint32(b[48:], uint32(len(info.Origin)))
	le.PutUint32(b[52:], uint32(len(info.Path)))
	le.PutUint64(b[56:], uint64(info.ModTime.UnixNano()))
	le.PutUint32(b[64:], uint32(len(info.Version)))
	s := b[fixedHeader:]
	s = s[copy(s, info.Origin):]
	s = s[copy(s, info.Path):]
	copy(s, info.Version)
	le.PutUint32(b[68:], headerCRC(b, sl))
	return b, nil
}

func headerCRC(b []byte, stringsLen int) uint32 {
	crc := crc32.Update(0, castagnoli, b[0:12])
	crc = crc32.Update(crc, castagnoli, b[16:40])
	crc = crc32.Update(crc, castagnoli, b[48:68])
	return crc32.Update(crc, castagnoli, b[fixedHeader:fixedHeader+stringsLen])
}

var errBadSidecar = errors.New("bad sidecar")

// decodeHeader validates a whole sidecar image and returns its header and length.
// Every length is checked against the image before use: a torn or hostile file gives
// an error, never a panic.
func decodeHeader(b []byte) (*objectInfo, int, error) {
	if len(b) < fixedHeader || string(b[:8]) != sidecarMagic {
		return nil, 0, fmt.Errorf("%w: no magic", errBadSidecar)
	}
	le := binary.LittleEndian
	hl := int(le.Uint32(b[8:]))
	ol, pl, vl := int(le.Uint32(b[48:])), int(le.Uint32(b[52:])), int(le.Uint32(b[64:]))
	if ol > maxStringsLen || pl > maxStringsLen || vl > maxStringsLen {
		return nil, 0, fmt.Errorf("%w: string lengths", errBadSidecar)
	}
	sl := ol + pl + vl
	if hl != align8(fixedHeader+sl) || hl > len(b) {
		return nil, 0, fmt.Errorf("%w: header length %d", errBadSidecar, hl)
	}
	if headerCRC(b, sl) != le.Uint32(b[68:]) {
		return nil, 0, fmt.Errorf("%w: header checksum", errBadSidecar)
	}
	info := &objectInfo{
		ChunkSize:  int64(le.Uint64(b[16:])),
		Size:       int64(le.Uint64(b[24:])),
		LastAccess: time.Unix(0, int64(le.Uint64(b[40:]))),
		ModTime:    time.Unix(0, int64(le.Uint64(b[56:]))),
		Pinned:     le.Uint32(b[12:])&flagPinned != 0,
	}
	if info.ChunkSize <= 0 || info.ChunkSize > 1<<30 || info.Size < 0 || info.Size > info.ChunkSize*maxChunks {
		return nil, 0, fmt.Errorf("%w: geometry", errBadSidecar)
	}
	n := info.nchunks()
	if uint64(n) != le.Uint64(b[32:]) || sidecarSize(hl, n) != len(b) {
		return nil, 0, fmt.Errorf("%w: size %d for %d chunks", errBadSidecar, len(b), n)
	}
	s := b[fixedHeader:]
	info.Origin, s = string(s[:ol]), s[ol:]
	info.Path, s = string(s[:pl]), s[pl:]
	info.Version = string(s[:vl])
	return info, hl, nil
}

// sidecar is an open sidecar file and this process's copy of it. Reads (has, crc,
// count) use the copy; writes change the copy, then the file with pwrite, so they
// reach the page cache at once and survive a kill -9 of the process.
//
// It is not a mapping of the file: a mapped file truncated by someone else (a stray
// `truncate -s 100`) raises SIGBUS at the next access beyond its new end, which no Go
// code can recover in every goroutine that touches it, and took the whole process
// (and its mount) down. The copy never faults, whatever happens to the file. The file
// only ever lags the copy (a failed pwrite leaves a bit unset, or a CRC that no
// longer matches): a missing bit means a refetch, a wrong CRC is caught by the
// re-hash on first open (invariant 3), so what the file says is never trusted
// beyond that: a write-back that fails marks the sidecar lagging, and the object is
// re-hashed when its sidecar is next loaded, also in this process (a chunk dropped
// from the copy may keep its bit in the file, over a punched hole). A damaged file is
// found the next time the object is opened, and the object dropped.
//
// Invariant: a chunk's bit is set only after its data and CRC are written; readers that
// see the bit may read the data.
type sidecar struct {
	f *os.File
	// rec, for an object of at most one chunk, is the object index that holds the
	// image instead of a file (f is then nil): write-backs put the whole image
	// there under key, unless gone (the object was removed).
	rec    *objectRecords
	key    string
	gone   *atomic.Bool
	recMu  sync.Mutex // orders the images put, so the last one put is the newest
	words  []uint64   // mem's backing array, for atomic snapshots
	mem    []byte     // the file's contents as this process knows them
	hl     int        // header length: the bitmap starts at mem[hl]
	bitmap []uint64
	crcs   []uint32
	// wmu makes "change a bitmap word, then write it" atomic, so that two chunks
	// landing in one word at once cannot leave the file without one of the bits.
	wmu sync.Mutex
	// lagging: a write-back failed, so the file differs from the copy in ways
	// nobody recorded (a bit without its CRC, a dropped chunk's bit still set).
	lagging atomic.Bool
}

// maxSidecarSize bounds the copy a sidecar takes in memory (a 1 TiB object at 1 MiB
// chunks needs 4.1 MiB).
const maxSidecarSize = 64 << 20

// loadSidecar reads the open sidecar file f, which it keeps (close releases it).
func loadSidecar(f *os.File) (*sidecar, *objectInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := fi.Size()
	if size < fixedHeader || size > maxSidecarSize {
		return nil, nil, fmt.Errorf("%w: file size %d", errBadSidecar, size)
	}
	words, mem := sidecarMem(int(size))
	if n, err := f.ReadAt(mem, 0); int64(n) != size {
		return nil, nil, fmt.Errorf("%w: read %d of %d bytes: %v", errBadSidecar, n, size, err)
	}
	return newSidecar(f, words, mem)
}

// sidecarMem allocates a sidecar image of size bytes, backed by uint64s so that the
// bitmap (at a multiple of 8) is aligned for atomics.
func sidecarMem(size int) ([]uint64, []byte) {
	words := make([]uint64, (size+7)/8)
	return words, unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)
}

// loadIndexedSidecar makes the sidecar of an indexed object from its record img.
func loadIndexedSidecar(rec *objectRecords, key string, gone *atomic.Bool, img []byte) (*sidecar, *objectInfo, error) {
	if len(img) < fixedHeader || len(img) > maxSidecarSize {
		return nil, nil, fmt.Errorf("%w: index record of %d bytes", errBadSidecar, len(img))
	}
	words, mem := sidecarMem(len(img))
	copy(mem, img)
	s, info, err := newSidecar(nil, words, mem)
	if err != nil {
		return nil, nil, err
	}
	s.rec, s.key, s.gone = rec, key, gone
	return s, info, nil
}

func newSidecar(f *os.File, words []uint64, mem []byte) (*sidecar, *objectInfo, error) {
	info, hl, err := decodeHeader(mem)
	if err != nil {
		return nil, nil, err
	}
	n := info.nchunks()
	s := &sidecar{f: f, words: words, mem: mem, hl: hl}
	if nw := bitmapWords(n); nw > 0 {
		s.bitmap = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[hl])), nw)
		s.crcs = unsafe.Slice((*uint32)(unsafe.Pointer(&mem[hl+8*nw])), n)
	}
	return s, info, nil
}

// close closes the file. The sidecar must not be used after.
func (s *sidecar) close() {
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.words, s.mem, s.bitmap, s.crcs = nil, nil, nil, nil, nil
}

// writeBack writes the n bytes of the copy at off to the file. Its error is not
// returned but remembered (lagging): the file lagging the copy is safe as long as
// the next load of it re-hashes the object (see sidecar).
func (s *sidecar) writeBack(off, n int) {
	if s.rec != nil {
		s.putRecord()
		return
	}
	if _, err := s.f.WriteAt(s.mem[off:off+n], int64(off)); err != nil {
		s.lagging.Store(true)
	}
}

// putRecord puts a snapshot of the whole image in the object index. The words are
// read atomically: other chunks' bits and CRCs change under it.
func (s *sidecar) putRecord() {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	snap := make([]uint64, len(s.words))
	for i := range s.words {
		snap[i] = atomic.LoadUint64(&s.words[i])
	}
	img := unsafe.Slice((*byte)(unsafe.Pointer(&snap[0])), len(s.mem))
	s.rec.put(s.key, img, s.gone)
}

func (s *sidecar) has(i int) bool {
	return atomic.LoadUint64(&s.bitmap[i/64])&(1<<(i%64)) != 0
}

// set records chunk i as present with the given CRC: the CRC first, then the bit, in
// the copy and in the file.
func (s *sidecar) set(i int, crc uint32) {
	atomic.StoreUint32(&s.crcs[i], crc)
	if s.rec == nil { // a record is put whole, with the CRC, by the bit's write-back
		s.writeBack(s.crcOff(i), 4)
	}
	s.wmu.Lock()
	atomic.OrUint64(&s.bitmap[i/64], 1<<(i%64))
	s.writeBack(s.hl+8*(i/64), 8)
	s.wmu.Unlock()
}

func (s *sidecar) clear(i int) {
	s.wmu.Lock()
	atomic.AndUint64(&s.bitmap[i/64], ^uint64(1<<(i%64)))
	s.writeBack(s.hl+8*(i/64), 8)
	s.wmu.Unlock()
}

// crcOff is where chunk i's CRC lies in the file.
func (s *sidecar) crcOff(i int) int { return s.hl + 8*len(s.bitmap) + 4*i }

func (s *sidecar) crc(i int) uint32 { return atomic.LoadUint32(&s.crcs[i]) }

func (s *sidecar) count() int {
	n := 0
	for i := range s.bitmap {
		n += bits.OnesCount64(atomic.LoadUint64(&s.bitmap[i]))
	}
	return n
}

func (s *sidecar) setPinned(p bool) {
	flags := (*uint32)(unsafe.Pointer(&s.mem[12]))
	s.wmu.Lock()
	if p {
		atomic.OrUint32(flags, flagPinned)
	} else {
		atomic.AndUint32(flags, ^uint32(flagPinned))
	}
	s.writeBack(12, 4)
	s.wmu.Unlock()
}

func (s *sidecar) setLastAccess(t time.Time) {
	atomic.StoreInt64((*int64)(unsafe.Pointer(&s.mem[40])), t.UnixNano())
	s.writeBack(40, 8)
}
