package s3store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Receipt is what this host knows about a recording whose local copy it
// removed after a verified upload: the object's size, SHA-256 and ETag.
type Receipt struct {
	Bytes  int64
	SHA256 string // hex
	ETag   string
}

// ReadReceipt returns the receipt of recording file name (e.g.
// "<id>.pcrec") kept in recording directory dir, and whether there is
// one. A receipt that cannot be read is an error, not "none": the read
// must then be refused rather than trust the bucket.
func ReadReceipt(dir, name string) (Receipt, bool, error) {
	if checkName(name) != nil {
		return Receipt{}, false, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, stateDir, name+receiptExt))
	if errors.Is(err, fs.ErrNotExist) {
		return Receipt{}, false, nil
	}
	if err != nil {
		return Receipt{}, false, fmt.Errorf("s3store: receipt: %w", err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil || m.Bytes < 0 || len(m.SHA256) != 64 {
		return Receipt{}, false, fmt.Errorf("s3store: receipt of %s is corrupt", name)
	}
	return Receipt{Bytes: m.Bytes, SHA256: m.SHA256, ETag: m.ETag}, true, nil
}

// RemoveReceipt forgets the receipt of name (its object was purged).
func RemoveReceipt(dir, name string) {
	if checkName(name) == nil {
		os.Remove(filepath.Join(dir, stateDir, name+receiptExt))
	}
}

// ErrNotUploaded: the object is not the one that was uploaded (cut,
// replaced or extended in the bucket).
var ErrNotUploaded = errors.New("s3store: the object in the bucket is not the recording that was uploaded")

// CheckObject compares object o (as listed or stated) with the receipt.
func (r Receipt) CheckObject(o Object) error {
	if o.Size != r.Bytes || (r.ETag != "" && o.ETag != r.ETag) {
		return fmt.Errorf("%w: %d bytes with ETag %q, uploaded %d with %q", ErrNotUploaded, o.Size, o.ETag, r.Bytes, r.ETag)
	}
	return nil
}

// CheckContent hashes the first Bytes of f and compares them with the
// receipt (the object fetched for an export).
func (r Receipt) CheckContent(f io.ReaderAt, size int64) error {
	if size != r.Bytes {
		return fmt.Errorf("%w: %d bytes, uploaded %d", ErrNotUploaded, size, r.Bytes)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return fmt.Errorf("s3store: reading the fetched object: %w", err)
	}
	if hex.EncodeToString(h.Sum(nil)) != r.SHA256 {
		return fmt.Errorf("%w: SHA-256 differs", ErrNotUploaded)
	}
	return nil
}
