package recording

import "testing"

func benchOptions(testing.TB) Options { return Options{Key: testKEK} }
