//go:build !race

package multipod_test

const raceBuild = false
