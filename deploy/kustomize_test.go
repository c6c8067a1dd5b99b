package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestKustomizeOverlay builds an overlay like the one deploy/README.md shows
// (a namespace, the kubecord image from a registry) with kustomize itself,
// and checks that the namespace and image reach every object. kustomize
// comes with kubectl, which CI need not have: the strict checks of the base
// do not depend on it.
func TestKustomizeOverlay(t *testing.T) {
	t.Parallel()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: skipping the kustomize build of an overlay")
	}
	base, err := filepath.Abs(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	// kustomize refuses absolute resource paths.
	rel, err := filepath.Rel(overlay, base)
	if err != nil {
		t.Fatal(err)
	}
	const image = "registry.invalid/team/kubecord"
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: my-bot
resources:
  - %s
images:
  - name: kubecord
    newName: %s
    newTag: v9.9.9
`, filepath.ToSlash(rel), image)
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", overlay)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, stderr.String())
	}
	built, err := decodeAll("kustomize output", stdout.Bytes())
	if err != nil {
		t.Fatalf("decoding kustomize's output strictly: %v", err)
	}
	_, files := loadManifests(t)
	if want := len(files) - 1; len(built) != want { // all but the Secret template
		t.Errorf("kustomize built %d objects, want %d (every object of the base but the Secret template)", len(built), want)
	}
	n := 0
	for _, m := range built {
		acc, err := metaOf(m.obj)
		if err != nil {
			t.Fatal(err)
		}
		if acc.GetNamespace() != "my-bot" {
			t.Errorf("%s: namespace %q, want the overlay's my-bot", m, acc.GetNamespace())
		}
		var pod corev1.PodSpec
		switch obj := m.obj.(type) {
		case *appsv1.Deployment:
			pod = obj.Spec.Template.Spec
		case *appsv1.StatefulSet:
			pod = obj.Spec.Template.Spec
		}
		for _, c := range pod.Containers {
			if name, _ := imageName(c.Image); name == "kubecord" {
				t.Errorf("%s: image %s was not replaced by the overlay's", m, c.Image)
			}
			if c.Image == image+":v9.9.9" {
				n++
			}
		}
	}
	if n < 3 {
		t.Errorf("%d containers run %s:v9.9.9, want gateway, state and rest", n, image)
	}
}
