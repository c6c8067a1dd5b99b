// Package deploy holds Kubecord's deployment files and the tests that keep
// them honest: the Kubernetes manifests under kubernetes/ (decoded strictly
// with client-go's scheme and cross-checked: selectors, ports, probes,
// Secret and ConfigMap references, images, and every flag and KUBECORD_*
// variable against what the kubecord binary and the SDK accept), and the
// docker-compose files at the repository's root (checked with
// `docker-compose config`). Two tests run the stack either file set
// describes as local processes against the Discord simulator, to prove the
// wiring works, not only that it parses.
//
// It is a module of its own so that k8s.io/client-go and k8s.io/api never
// enter the main module's go.mod. Run its tests with
//
//	cd deploy && go test ./...
//
// probe/ is kubecord-probe, the health check of the FROM-scratch images.
package deploy
