// Package examples holds the example workers (Go, Python, Node.js) and the
// end-to-end test that runs all three against `kubecord all` and the
// simulator.
package examples
