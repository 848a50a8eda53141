package config

import "strings"

// suggest returns the candidate closest to got when it is close enough to
// be a plausible typo, else "". Distance is optimal string alignment
// (Levenshtein plus adjacent transpositions), case-insensitive.
func suggest(got string, candidates []string) string {
	g := strings.ToLower(got)
	best, bestD := "", -1
	for _, c := range candidates {
		d := osaDistance(g, strings.ToLower(c))
		limit := max(2, len(c)/3)
		if d > limit {
			continue
		}
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// osaDistance is the optimal-string-alignment edit distance between a and
// b (bytes). Inputs are YAML keys, so both are short; a cap keeps hostile
// multi-kilobyte keys cheap.
func osaDistance(a, b string) int {
	const maxLen = 64
	if len(a) > maxLen || len(b) > maxLen {
		return maxLen
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// secretWords are the words that make a key name a secret when it is the
// last word of the key or appears anywhere in it ("client_secret",
// "password", "cookie_key", "api_token").
var secretWords = []string{"secret", "password", "passwd", "token", "key", "credential", "credentials", "private"}

// looksSecret reports whether a key names a secret that must not be given
// inline. Keys ending in _file or _env name a source, not the secret;
// "key_prefix" and the like are not secrets (the secret word must be the
// last word, or "secret"/"password" anywhere).
func looksSecret(key string) bool {
	k := strings.ToLower(key)
	if strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "_env") {
		return false
	}
	if strings.Contains(k, "secret") || strings.Contains(k, "password") {
		return true
	}
	words := strings.FieldsFunc(k, func(r rune) bool { return r == '_' || r == '-' || r == '.' })
	if len(words) == 0 {
		return false
	}
	last := words[len(words)-1]
	for _, w := range secretWords {
		if last == w {
			return true
		}
	}
	return false
}
