package harness

import (
	"slices"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// totpPeriod is the TOTP step (RFC 6238 default, what Portcullis uses).
const totpPeriod = 30

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// TOTP is a user's authenticator app. Portcullis accepts a code for the
// current step ±1 and never the same step twice, so Code hands out the
// current step first and then the next one: two logins per user within
// one 30 s window, and never a sleep. (The previous step is not used: a
// step boundary passing between computing and checking would make it
// stale.)
type TOTP struct {
	Secret string

	mu   sync.Mutex
	used map[int64]bool
}

// NewTOTP is the authenticator for a secret read from the enrolment page.
func NewTOTP(secret string) *TOTP {
	RecordSecret(KindTOTPSecret, secret)
	return &TOTP{Secret: secret, used: map[int64]bool{}}
}

// CurrentStep is the TOTP step of now.
func CurrentStep() int64 { return time.Now().Unix() / totpPeriod }

// Code returns a code for the first unused of the current and the next
// step and marks that step used.
func (o *TOTP) Code(t TB) string {
	t.Helper()
	cur := CurrentStep()
	for _, s := range []int64{cur, cur + 1} {
		o.mu.Lock()
		used := o.used[s]
		o.mu.Unlock()
		if !used {
			return o.CodeAt(t, s)
		}
	}
	t.Fatalf("TOTP: steps %d and %d already used for this user; use another user", cur, cur+1)
	return ""
}

// CodeAt returns the code of step s and marks it used (also for replay
// tests that submit a used code on purpose).
func (o *TOTP) CodeAt(t TB, s int64) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(o.Secret, time.Unix(s*totpPeriod, 0), totpOpts)
	if err != nil {
		t.Fatalf("TOTP code: %v", err)
	}
	o.mu.Lock()
	o.used[s] = true
	o.mu.Unlock()
	RecordSecret(KindTOTPCode, code)
	return code
}

// Steps returns the steps handed out so far, in order.
func (o *TOTP) Steps() []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]int64, 0, len(o.used))
	for s := range o.used {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Used reports whether step s was handed out.
func (o *TOTP) Used(s int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.used[s]
}
