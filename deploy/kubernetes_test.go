package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	manifestDir = "kubernetes"
	// secretTemplate is decoded and checked like the others, but kept out
	// of kustomization.yaml: applying it would deploy placeholder secrets.
	secretTemplate = "secret.example.yaml"
)

// strictDecoder decodes YAML into client-go's typed objects and fails on
// unknown or duplicate fields, so a misspelt field is an error, not a
// setting the API server silently drops.
var strictDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// kustomization is the part of kustomization.yaml this repository uses;
// decoded strictly, so anything else in it fails the test until it is
// checked here too.
type kustomization struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Resources  []string         `json:"resources"`
	Images     []kustomizeImage `json:"images"`
}

// kustomizeImage is an entry of a kustomization's images: where an overlay
// points an image at a registry.
type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
}

// manifest is one decoded object and where it came from.
type manifest struct {
	file string
	obj  runtime.Object
}

func (m manifest) String() string {
	acc, err := metaOf(m.obj)
	if err != nil {
		return m.file
	}
	return fmt.Sprintf("%s: %s %s", m.file, m.obj.GetObjectKind().GroupVersionKind().Kind, acc.GetName())
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	acc, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return acc, nil
}

// decodeAll splits a multi-document YAML stream and decodes every document
// strictly.
func decodeAll(file string, data []byte) ([]manifest, error) {
	r := kyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []manifest
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading document %d: %w", file, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := strictDecoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		out = append(out, manifest{file: file, obj: obj})
	}
}

// loadManifests decodes every manifest of kustomization.yaml and the Secret
// template, after checking that the directory holds nothing else.
func loadManifests(t *testing.T) (kustomization, []manifest) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(manifestDir, "kustomization.yaml"))
	if err != nil {
		t.Fatalf("reading kustomization.yaml: %v", err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: apiVersion/kind = %s/%s, want kustomize.config.k8s.io/v1beta1/Kustomization", k.APIVersion, k.Kind)
	}
	entries, err := os.ReadDir(manifestDir)
	if err != nil {
		t.Fatalf("listing %s: %v", manifestDir, err)
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		if listed[r] {
			t.Errorf("kustomization.yaml lists %s twice", r)
		}
		listed[r] = true
	}
	files := append([]string(nil), k.Resources...)
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir():
			t.Errorf("%s/%s: unexpected folder (overlays belong outside the base, or in kustomization.yaml)", manifestDir, name)
		case name == "kustomization.yaml":
		case name == secretTemplate:
			if listed[name] {
				t.Errorf("kustomization.yaml lists %s: the template's placeholders would be applied", name)
			}
			files = append(files, name)
		case !listed[name]:
			t.Errorf("%s/%s is not listed in kustomization.yaml resources", manifestDir, name)
		}
	}
	var all []manifest
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(manifestDir, f))
		if err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", f, err)
			continue
		}
		ms, err := decodeAll(f, data)
		if err != nil {
			t.Errorf("decoding: %v", err)
			continue
		}
		if len(ms) == 0 {
			t.Errorf("%s holds no object", f)
		}
		all = append(all, ms...)
	}
	if t.Failed() {
		t.FailNow()
	}
	return k, all
}

// TestStrictDecoderRejects proves the decoder the other tests rely on fails
// on the mistakes it is there to catch.
func TestStrictDecoderRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc, want string
	}{
		{"misspelt field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicaz: 2}\n", `unknown field "spec.replicaz"`},
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n", `already set`},
		{"field in the wrong place", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 1, containerPort: 1}]\n", `unknown field "spec.ports[0].containerPort"`},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n", `no kind "Widget"`},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n", `replicas`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeAll("test.yaml", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decodeAll(%q) error = %v, want one containing %q", tt.doc, err, tt.want)
			}
		})
	}
	ok := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: second}\n"
	ms, err := decodeAll("ok.yaml", []byte(ok))
	if err != nil || len(ms) != 2 {
		t.Fatalf("decodeAll(two ConfigMaps and a comment) = %d objects, %v; want 2, nil", len(ms), err)
	}
}

// workload is a Deployment or StatefulSet, seen through what the checks need.
type workload struct {
	m        manifest
	kind     string
	name     string
	selector *metav1.LabelSelector
	replicas *int32
	tmpl     corev1.PodTemplateSpec
}

// objects indexes the decoded manifests by kind.
type objects struct {
	workloads  []workload
	services   map[string]*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	pdbs       []*policyv1.PodDisruptionBudget
	hpas       []*autoscalingv2.HorizontalPodAutoscaler
}

func index(t *testing.T, all []manifest) objects {
	t.Helper()
	o := objects{services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	seen := map[string]string{}
	for _, m := range all {
		acc, err := metaOf(m.obj)
		if err != nil {
			t.Errorf("%s: %v", m, err)
			continue
		}
		kind := m.obj.GetObjectKind().GroupVersionKind().Kind
		key := kind + "/" + acc.GetName()
		if prev, dup := seen[key]; dup {
			t.Errorf("%s is defined twice (%s and %s)", key, prev, m.file)
		}
		seen[key] = m.file
		if acc.GetNamespace() != "" {
			t.Errorf("%s sets namespace %q: the manifests must stay namespace-agnostic (kubectl apply -k ... -n NS)", m, acc.GetNamespace())
		}
		if acc.GetLabels()["app.kubernetes.io/part-of"] != "kubecord" {
			t.Errorf("%s: want label app.kubernetes.io/part-of: kubecord", m)
		}
		switch obj := m.obj.(type) {
		case *appsv1.Deployment:
			o.workloads = append(o.workloads, workload{m, kind, obj.Name, obj.Spec.Selector, obj.Spec.Replicas, obj.Spec.Template})
		case *appsv1.StatefulSet:
			o.workloads = append(o.workloads, workload{m, kind, obj.Name, obj.Spec.Selector, obj.Spec.Replicas, obj.Spec.Template})
		case *corev1.Service:
			o.services[obj.Name] = obj
		case *corev1.ConfigMap:
			o.configMaps[obj.Name] = obj
		case *corev1.Secret:
			o.secrets[obj.Name] = obj
		case *policyv1.PodDisruptionBudget:
			o.pdbs = append(o.pdbs, obj)
		case *autoscalingv2.HorizontalPodAutoscaler:
			o.hpas = append(o.hpas, obj)
		default:
			t.Errorf("%s: kind %s is not checked by this test: add checks for it", m, kind)
		}
	}
	return o
}

// selecting returns the workloads whose pods sel matches.
func (o objects) selecting(t *testing.T, sel *metav1.LabelSelector) []workload {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("selector %v: %v", sel, err)
		return nil
	}
	if s.Empty() {
		return nil // an empty selector would select every pod: never wanted here
	}
	var out []workload
	for _, w := range o.workloads {
		if s.Matches(labels.Set(w.tmpl.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	k, all := loadManifests(t)
	o := index(t, all)
	for _, want := range []struct{ kind, name string }{
		{"StatefulSet", "kubecord-gateway"}, {"Deployment", "kubecord-state"}, {"Deployment", "kubecord-rest"},
		{"Deployment", "kubecord-ping"}, {"StatefulSet", "kubecord-redis"},
	} {
		if !slices.ContainsFunc(o.workloads, func(w workload) bool { return w.kind == want.kind && w.name == want.name }) {
			t.Errorf("no %s %s in the manifests", want.kind, want.name)
		}
	}
	t.Run("workloads", func(t *testing.T) { checkWorkloads(t, o) })
	t.Run("services", func(t *testing.T) { checkServices(t, o) })
	t.Run("references", func(t *testing.T) { checkReferences(t, o) })
	t.Run("kubecord containers", func(t *testing.T) { checkKubecordContainers(t, o) })
	t.Run("workers", func(t *testing.T) { checkWorkers(t, o) })
	t.Run("disruption budgets", func(t *testing.T) { checkPDBs(t, o) })
	t.Run("autoscalers", func(t *testing.T) { checkHPAs(t, o) })
	t.Run("images", func(t *testing.T) { checkImages(t, k, o) })
}

func checkWorkloads(t *testing.T, o objects) {
	for _, w := range o.workloads {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() {
			t.Errorf("%s: selector %v is empty or invalid (%v)", w.m, w.selector, err)
		} else if !sel.Matches(labels.Set(w.tmpl.Labels)) {
			t.Errorf("%s: selector %s does not match its own pod labels %v", w.m, sel, w.tmpl.Labels)
		}
		for _, other := range o.workloads {
			if other.name != w.name && sel != nil && !sel.Empty() && sel.Matches(labels.Set(other.tmpl.Labels)) {
				t.Errorf("%s: selector %s also matches the pods of %s", w.m, sel, other.m)
			}
		}
		pod := w.tmpl.Spec
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: set automountServiceAccountToken: false (nothing here talks to the API server)", w.m)
		}
		psc := pod.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s: the pod must run as a non-root user (securityContext.runAsNonRoot and runAsUser)", w.m)
		}
		if len(pod.Containers) == 0 {
			t.Errorf("%s: no containers", w.m)
		}
		mounts := map[string]bool{}
		for _, v := range pod.Volumes {
			mounts[v.Name] = true
		}
		for _, c := range w.tmplVolumeClaims() {
			mounts[c] = true
		}
		for _, c := range pod.Containers {
			where := fmt.Sprintf("%s container %s", w.m, c.Name)
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: set securityContext.readOnlyRootFilesystem: true", where)
			}
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: set securityContext.allowPrivilegeEscalation: false", where)
			}
			if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s: drop ALL capabilities", where)
			}
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, hasReq := c.Resources.Requests[res]
				lim, hasLim := c.Resources.Limits[res]
				if !hasReq || !hasLim {
					t.Errorf("%s: set both a request and a limit for %s", where, res)
				} else if req.Cmp(lim) > 0 {
					t.Errorf("%s: %s request %s is above its limit %s", where, res, req.String(), lim.String())
				}
			}
			for _, vm := range c.VolumeMounts {
				if !mounts[vm.Name] {
					t.Errorf("%s: mounts volume %q that the pod does not define", where, vm.Name)
				}
			}
			ports := containerPorts(c)
			for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
				if p == nil {
					continue
				}
				if err := checkProbePort(p, ports); err != nil {
					t.Errorf("%s: %s probe: %v", where, name, err)
				}
			}
		}
	}
}

// tmplVolumeClaims returns the names of a StatefulSet's volume claim
// templates, which pods mount like volumes.
func (w workload) tmplVolumeClaims() []string {
	ss, ok := w.m.obj.(*appsv1.StatefulSet)
	if !ok {
		return nil
	}
	var out []string
	for _, c := range ss.Spec.VolumeClaimTemplates {
		out = append(out, c.Name)
	}
	return out
}

// containerPorts maps a container's port names and numbers to its ports.
func containerPorts(c corev1.Container) map[string]corev1.ContainerPort {
	out := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		out[fmt.Sprint(p.ContainerPort)] = p
		if p.Name != "" {
			out[p.Name] = p
		}
	}
	return out
}

func checkProbePort(p *corev1.Probe, ports map[string]corev1.ContainerPort) error {
	has := func(port intstr.IntOrString) error {
		if _, ok := ports[port.String()]; !ok {
			return fmt.Errorf("port %s is not a port of the container", port.String())
		}
		return nil
	}
	switch {
	case p.GRPC != nil:
		return has(intstr.FromInt32(p.GRPC.Port))
	case p.HTTPGet != nil:
		return has(p.HTTPGet.Port)
	case p.TCPSocket != nil:
		return has(p.TCPSocket.Port)
	case p.Exec != nil:
		if len(p.Exec.Command) == 0 {
			return errors.New("exec probe without a command")
		}
		return nil
	}
	return errors.New("no handler (grpc, httpGet, tcpSocket or exec)")
}

func checkServices(t *testing.T, o objects) {
	for name, svc := range o.services {
		ws := o.selecting(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
		if len(ws) == 0 {
			t.Errorf("Service %s: selector %v matches no workload's pods", name, svc.Spec.Selector)
			continue
		}
		for _, sp := range svc.Spec.Ports {
			target := sp.TargetPort
			if target.String() == "0" || target.String() == "" {
				target = intstr.FromInt32(sp.Port)
			}
			for _, w := range ws {
				found := false
				for _, c := range w.tmpl.Spec.Containers {
					if p, ok := containerPorts(c)[target.String()]; ok && p.Protocol == sp.Protocol {
						found = true
					}
				}
				if !found {
					t.Errorf("Service %s port %s: targetPort %s is no container port of %s", name, sp.Name, target.String(), w.m)
				}
			}
		}
	}
	for _, w := range o.workloads {
		ss, ok := w.m.obj.(*appsv1.StatefulSet)
		if !ok {
			continue
		}
		svc, ok := o.services[ss.Spec.ServiceName]
		switch {
		case !ok:
			t.Errorf("%s: serviceName %q is no Service in the manifests", w.m, ss.Spec.ServiceName)
		case svc.Spec.ClusterIP != corev1.ClusterIPNone && ss.Name != "kubecord-redis":
			t.Errorf("%s: serviceName %q must be a headless Service (clusterIP: None) for per-pod DNS", w.m, svc.Name)
		}
	}
}

// envValue resolves a container's environment variable to its value when it
// is literal or comes from a ConfigMap key of the set; secret values are
// not resolved.
func envValue(e corev1.EnvVar, o objects) (string, bool) {
	if e.ValueFrom == nil {
		return e.Value, true
	}
	if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
		if cm, ok := o.configMaps[ref.Name]; ok {
			v, ok := cm.Data[ref.Key]
			return v, ok
		}
	}
	return "", false
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func checkReferences(t *testing.T, o objects) {
	for _, w := range o.workloads {
		for _, c := range w.tmpl.Spec.Containers {
			where := fmt.Sprintf("%s container %s", w.m, c.Name)
			defined := map[string]bool{}
			for _, e := range c.Env {
				if defined[e.Name] {
					t.Errorf("%s: env %s is set twice", where, e.Name)
				}
				for _, m := range envRef.FindAllStringSubmatch(e.Value, -1) {
					if !defined[m[1]] {
						t.Errorf("%s: env %s uses $(%s), which is not defined before it (the kubelet would pass it literally)", where, e.Name, m[1])
					}
				}
				defined[e.Name] = true
				if e.ValueFrom == nil {
					continue
				}
				if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
					cm, ok := o.configMaps[ref.Name]
					if !ok {
						t.Errorf("%s: env %s: ConfigMap %q is not in the manifests", where, e.Name, ref.Name)
					} else if _, ok := cm.Data[ref.Key]; !ok {
						t.Errorf("%s: env %s: ConfigMap %s has no key %q", where, e.Name, ref.Name, ref.Key)
					}
				}
				if ref := e.ValueFrom.SecretKeyRef; ref != nil {
					s, ok := o.secrets[ref.Name]
					if !ok {
						t.Errorf("%s: env %s: Secret %q is not in %s", where, e.Name, ref.Name, secretTemplate)
					} else if _, ok := s.StringData[ref.Key]; !ok {
						t.Errorf("%s: env %s: Secret %s has no key %q in %s", where, e.Name, ref.Name, ref.Key, secretTemplate)
					}
				}
				if ref := e.ValueFrom.FieldRef; ref != nil && !strings.HasPrefix(ref.FieldPath, "metadata.") && !strings.HasPrefix(ref.FieldPath, "status.") && !strings.HasPrefix(ref.FieldPath, "spec.") {
					t.Errorf("%s: env %s: fieldPath %q", where, e.Name, ref.FieldPath)
				}
			}
			for _, ef := range c.EnvFrom {
				t.Errorf("%s: envFrom %v: list each variable instead, so that every one is checked against the binary's flags", where, ef)
			}
			// Addresses the container is given must be Services of the set,
			// on one of their ports.
			for _, e := range c.Env {
				v, ok := envValue(e, o)
				if !ok {
					continue
				}
				for _, addr := range serviceAddrs(v) {
					if err := o.checkAddr(addr); err != nil {
						t.Errorf("%s: env %s=%q: %v", where, e.Name, v, err)
					}
				}
			}
		}
	}
	for name, s := range o.secrets {
		for key, v := range s.StringData {
			if v != "CHANGE-ME" {
				t.Errorf("Secret %s key %s: the template holds placeholders only (CHANGE-ME), found another value", name, key)
			}
		}
		if len(s.Data) > 0 {
			t.Errorf("Secret %s: the template uses stringData only", name)
		}
	}
}

// svcAddr is a host:port that should be a Service of the manifests.
type svcAddr struct{ host, port string }

var addrPattern = regexp.MustCompile(`^(?:dns:///|redis://|https?://)?([a-z0-9-]+):([0-9]+)(?:/.*)?$`)

// serviceAddrs returns the in-cluster addresses of a value: a comma-separated
// list of host:port, dns:///host:port, redis://host:port/db or
// http://host:port/path; values that are no such address give none.
func serviceAddrs(v string) []svcAddr {
	var out []svcAddr
	for _, part := range strings.Split(v, ",") {
		if m := addrPattern.FindStringSubmatch(strings.TrimSpace(part)); m != nil {
			out = append(out, svcAddr{m[1], m[2]})
		}
	}
	return out
}

func (o objects) checkAddr(a svcAddr) error {
	svc, ok := o.services[a.host]
	if !ok {
		return fmt.Errorf("%s is no Service in the manifests", a.host)
	}
	for _, p := range svc.Spec.Ports {
		if fmt.Sprint(p.Port) == a.port {
			return nil
		}
	}
	return fmt.Errorf("Service %s has no port %s", a.host, a.port)
}

// isKubecord reports whether a container runs the kubecord binary.
func isKubecord(c corev1.Container) bool {
	name, _ := imageName(c.Image)
	return name == "kubecord"
}

func checkKubecordContainers(t *testing.T, o objects) {
	services := healthServices(t)
	n := 0
	for _, w := range o.workloads {
		for _, c := range w.tmpl.Spec.Containers {
			if !isKubecord(c) {
				continue
			}
			n++
			where := fmt.Sprintf("%s container %s", w.m, c.Name)
			if len(c.Command) > 0 {
				t.Errorf("%s: command %q replaces the image's /kubecord entrypoint: use args", where, c.Command)
			}
			p, err := parseArgs(t, c.Args)
			if err != nil {
				t.Errorf("%s: args %q: %v", where, c.Args, err)
				continue
			}
			var names []string
			env := map[string]string{}
			for _, e := range c.Env {
				names = append(names, e.Name)
				if v, ok := envValue(e, o); ok {
					env[e.Name] = v
				}
			}
			for _, err := range checkEnvFlags(t, p.command, names) {
				t.Errorf("%s: %v", where, err)
			}
			for _, name := range names {
				if f := envFlag(name); f != "" {
					if _, dup := p.flags[f]; dup {
						t.Errorf("%s: --%s is set both in args and as %s (args win): keep one", where, f, name)
					}
				}
			}
			// Listeners bind beyond loopback, on the container's named ports.
			ports := containerPorts(c)
			for flag, portName := range map[string]string{"listen": "grpc", "metrics-listen": "metrics", "http-listen": "http"} {
				if _, known := commandFlags(t, p.command)[flag]; !known {
					continue
				}
				addr := effective(t, p, env, flag)
				port, err := listenPort(addr)
				if err != nil {
					t.Errorf("%s: --%s: %v", where, flag, err)
					continue
				}
				if strings.HasPrefix(addr, "127.") || strings.HasPrefix(addr, "localhost:") {
					t.Errorf("%s: --%s %s binds loopback: nothing outside the pod (probes, Services) reaches it", where, flag, addr)
				}
				cp, ok := ports[portName]
				if !ok || int(cp.ContainerPort) != port {
					t.Errorf("%s: --%s %s: want a container port named %q with containerPort %d", where, flag, addr, portName, port)
				}
			}
			// gRPC probes ask for the command's own service in the health
			// service (what internal/runtime registers for it).
			want, ok := services[p.command]
			if !ok {
				t.Errorf("%s: no proto service kubecord.%s.v1 for command %q", where, p.command, p.command)
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.GRPC == nil {
				t.Errorf("%s: want a grpc readiness probe on the gRPC health service", where)
			}
			for name, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "startup": c.StartupProbe, "liveness": c.LivenessProbe} {
				if pr == nil || pr.GRPC == nil {
					continue
				}
				if got := derefString(pr.GRPC.Service); got != want {
					t.Errorf("%s: %s probe: grpc service = %q, want %q", where, name, got, want)
				}
				if cp := ports["grpc"]; pr.GRPC.Port != cp.ContainerPort {
					t.Errorf("%s: %s probe: grpc port %d, want the gRPC port %d", where, name, pr.GRPC.Port, cp.ContainerPort)
				}
			}
			// The kubelet must wait out the service's whole shutdown.
			drain := flagDuration(t, p, env, "drain-delay") + flagDuration(t, p, env, "shutdown-timeout")
			grace := time.Duration(derefInt64(w.tmpl.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
			if grace <= drain {
				t.Errorf("%s: terminationGracePeriodSeconds %s must exceed drain delay + shutdown timeout (%s)", where, grace, drain)
			}
		}
	}
	if n < 3 {
		t.Errorf("found %d kubecord containers, want gateway, state and rest at least", n)
	}
}

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func derefInt64(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}

func checkWorkers(t *testing.T, o objects) {
	known := sdkEnv(t)
	n := 0
	for _, w := range o.workloads {
		for _, c := range w.tmpl.Spec.Containers {
			if name, _ := imageName(c.Image); name != "kubecord-ping" {
				continue
			}
			n++
			where := fmt.Sprintf("%s container %s", w.m, c.Name)
			env := map[string]string{}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "KUBECORD_") && !known[e.Name] {
					t.Errorf("%s: env %s: the SDK reads no such variable (it reads %s)", where, e.Name, sortedKeys(known))
				}
				if v, ok := envValue(e, o); ok {
					env[e.Name] = v
				}
			}
			for _, need := range []string{"KUBECORD_GATEWAYS", "KUBECORD_REST_ADDR", "KUBECORD_AUTH_SECRET"} {
				if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == need }) {
					t.Errorf("%s: env %s is not set", where, need)
				}
			}
			gw := env["KUBECORD_GATEWAYS"]
			host, ok := strings.CutPrefix(gw, "dns:///")
			if !ok {
				t.Errorf("%s: KUBECORD_GATEWAYS=%q: want dns:///<headless service>:7001, so the worker reaches every gateway pod", where, gw)
				continue
			}
			name, _, _ := strings.Cut(host, ":")
			if svc, ok := o.services[name]; !ok || svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("%s: KUBECORD_GATEWAYS=%q: %s must be a headless Service", where, gw, name)
			} else if !svc.Spec.PublishNotReadyAddresses {
				t.Errorf("Service %s: set publishNotReadyAddresses, so workers keep draining a gateway pod that is not ready", name)
			}
		}
	}
	if n == 0 {
		t.Error("no example worker (image kubecord-ping) in the manifests")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkPDBs(t *testing.T, o objects) {
	covered := map[string]bool{}
	for _, pdb := range o.pdbs {
		ws := o.selecting(t, pdb.Spec.Selector)
		if len(ws) != 1 {
			t.Errorf("PodDisruptionBudget %s: selector matches %d workloads, want exactly one", pdb.Name, len(ws))
			continue
		}
		covered[ws[0].kind+"/"+ws[0].name] = true
		if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
			t.Errorf("PodDisruptionBudget %s: set one of minAvailable and maxUnavailable", pdb.Name)
		}
		if mav := pdb.Spec.MinAvailable; mav != nil && ws[0].replicas != nil && mav.Type == intstr.Int && *ws[0].replicas <= mav.IntVal {
			t.Errorf("PodDisruptionBudget %s: minAvailable %d with %d replicas blocks every node drain", pdb.Name, mav.IntVal, *ws[0].replicas)
		}
	}
	for _, w := range o.workloads {
		if !covered[w.kind+"/"+w.name] {
			t.Errorf("%s has no PodDisruptionBudget", w.m)
		}
	}
}

// gatewayMetrics returns the metric names (with their labels) the gateway
// exports, from its collector's source: "kubecord_gateway_" + the name of
// each d("name", "help", labels...) call.
func gatewayMetrics(t *testing.T) map[string][]string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "services", "gateway", "status.go"))
	if err != nil {
		t.Fatalf("reading the gateway's metrics: %v", err)
	}
	if !bytes.Contains(src, []byte(`"kubecord_gateway_"+name`)) {
		t.Fatal(`services/gateway/status.go no longer prefixes its metrics with "kubecord_gateway_": update this test`)
	}
	out := map[string][]string{}
	call := regexp.MustCompile(`\bd\("([a-z_]+)", "[^"]*"((?:, "[a-z_]+")*)\)`)
	for _, m := range call.FindAllSubmatch(src, -1) {
		var labels []string
		for _, l := range regexp.MustCompile(`"([a-z_]+)"`).FindAllSubmatch(m[2], -1) {
			labels = append(labels, string(l[1]))
		}
		out["kubecord_gateway_"+string(m[1])] = labels
	}
	if len(out) == 0 {
		t.Fatal("found no metric in services/gateway/status.go")
	}
	return out
}

func checkHPAs(t *testing.T, o objects) {
	if len(o.hpas) == 0 {
		t.Fatal("no HorizontalPodAutoscaler: the worker must scale on its group's lag")
	}
	metrics := gatewayMetrics(t)
	for _, h := range o.hpas {
		ref := h.Spec.ScaleTargetRef
		var target *workload
		for i, w := range o.workloads {
			if w.kind == ref.Kind && w.name == ref.Name && ref.APIVersion == "apps/v1" {
				target = &o.workloads[i]
			}
		}
		if target == nil {
			t.Errorf("HorizontalPodAutoscaler %s: scaleTargetRef %s %s is not in the manifests", h.Name, ref.Kind, ref.Name)
			continue
		}
		if target.replicas != nil {
			t.Errorf("%s sets replicas although HorizontalPodAutoscaler %s owns the count: every apply would reset it", target.m, h.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HorizontalPodAutoscaler %s: want 1 <= minReplicas <= maxReplicas", h.Name)
		}
		group := ""
		for _, e := range target.tmpl.Spec.Containers[0].Env {
			if e.Name == "KUBECORD_GROUP" {
				group = e.Value
			}
		}
		if len(h.Spec.Metrics) == 0 {
			t.Errorf("HorizontalPodAutoscaler %s: no metrics", h.Name)
		}
		for _, m := range h.Spec.Metrics {
			if m.Type != autoscalingv2.ExternalMetricSourceType || m.External == nil {
				t.Errorf("HorizontalPodAutoscaler %s: metric of type %s: the group's lag is measured by the gateway pods, so it is an External metric", h.Name, m.Type)
				continue
			}
			name := m.External.Metric.Name
			labels, ok := metrics[name]
			if !ok {
				t.Errorf("HorizontalPodAutoscaler %s: metric %s is not exported by the gateway (it exports %s)", h.Name, name, sortedKeys(metrics))
				continue
			}
			sel := m.External.Metric.Selector
			if sel == nil || !slices.Contains(labels, "group") || sel.MatchLabels["group"] != group || group == "" {
				t.Errorf("HorizontalPodAutoscaler %s: metric %s must select group=%q, the worker's KUBECORD_GROUP", h.Name, name, group)
			}
		}
	}
}

func checkImages(t *testing.T, k kustomization, o objects) {
	tags := map[string]string{}
	for _, w := range o.workloads {
		for _, c := range append(slices.Clone(w.tmpl.Spec.InitContainers), w.tmpl.Spec.Containers...) {
			if h := registryHost(c.Image); h != "" {
				t.Errorf("%s container %s: image %q names registry %s: set registries in an overlay's images", w.m, c.Name, c.Image, h)
			}
			name, tag := imageName(c.Image)
			if tag == "" || tag == "latest" {
				t.Errorf("%s container %s: image %q: pin a tag", w.m, c.Name, c.Image)
			}
			if prev, ok := tags[name]; ok && prev != tag {
				t.Errorf("%s container %s: image %s has tag %s here and %s elsewhere", w.m, c.Name, name, tag, prev)
			}
			tags[name] = tag
		}
	}
	for _, own := range []string{"kubecord", "kubecord-ping"} {
		i := slices.IndexFunc(k.Images, func(im kustomizeImage) bool { return im.Name == own })
		switch {
		case tags[own] == "":
			t.Errorf("no container uses image %s", own)
		case i < 0:
			t.Errorf("kustomization.yaml: images has no entry for %s (where an overlay points it at a registry)", own)
		case k.Images[i].NewTag != tags[own]:
			t.Errorf("kustomization.yaml: image %s newTag %q differs from the manifests' %q", own, k.Images[i].NewTag, tags[own])
		}
	}
}

// stripComments drops YAML comment lines, to tell an empty document from one
// that has content.
func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
