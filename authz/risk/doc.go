// Package risk is anomaly detection and account lockdown. The gateway and
// the bastion only report signals (failed factors, denied decisions,
// canary touches, successful logins, usage) and obey the verdicts; every
// decision is made here, from counts kept in the shared state store, so
// that all instances agree.
//
// Counting is "count first, then decide": each failure is an atomic
// increment in a sliding window, and the increment's result decides. A
// read-then-write would let parallel failures slip under a threshold.
// Of several instances deciding to lock at once, store.AddLock lets
// exactly one win; only the winner revokes, audits and alerts.
//
// Locks on users never expire: only an admin unlocks (Engine.Unlock). IP
// and network blocks expire and double on repeat. A source that fails
// against many users is blocked before it can lock many of them, so a
// lockout cannot be turned into a denial of service.
//
// Request and byte counts per user are aggregated in memory and flushed
// to the store periodically (Engine.Run): the per-request hot path never
// waits on the store.
package risk
