//go:build race

package audit

// raceEnabled: the race detector instruments every byte the trail parser
// reads (about 15× slower), so the largest cases are scaled down.
const raceEnabled = true
