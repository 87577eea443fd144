//go:build race

package ui_test

// raceEnabled: the tests run with -race, so the agents they start do too.
const raceEnabled = true
