package cache

import (
	"os"
	"syscall"
)

// fileBlocks returns the bytes a file occupies on disk, as du counts them.
func fileBlocks(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
