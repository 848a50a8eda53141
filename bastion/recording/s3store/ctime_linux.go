package s3store

import (
	"io/fs"
	"syscall"
)

// changeTime is fi's inode change time (ns): it moves on every write,
// including one that restores the modification time afterwards.
func changeTime(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Nano()
	}
	return 0
}
