package audit

import (
	"crypto/rand"
	"io"
)

// refAlphabet is Crockford's base32: no I, L, O or U, so a reference read
// out over the phone is not misheard or mistyped.
const refAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// RefLen is the number of random characters in a reference (50 bits).
const RefLen = 10

// NewRef returns a short reference ID shown to users next to a generic
// error ("ref-7KQ2M9XH4P") and recorded in the audit event and the log, so
// support can find the real cause. r is the injected randomness (nil or a
// failing reader fall back to crypto/rand: a reference must never be empty
// or predictable).
func NewRef(r io.Reader) string {
	var b [RefLen]byte
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, b[:]); err != nil {
		rand.Read(b[:])
	}
	out := make([]byte, 0, 4+RefLen)
	out = append(out, "ref-"...)
	for _, x := range b {
		out = append(out, refAlphabet[x&31]) // 256 is a multiple of 32: uniform
	}
	return string(out)
}
