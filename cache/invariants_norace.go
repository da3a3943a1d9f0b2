//go:build !race

package cache

// Without the race detector the invariant checks of invariants_race.go cost nothing.

func checkAccountingLocked(*Cache) {}

func checkChunkWritten(*object, int, uint32) {}
