//go:build race

package multipod_test

// raceBuild: the test runs with -race, so the pods it starts are built with it too, and a
// data race in a gateway process fails the test like one in the test itself.
const raceBuild = true
