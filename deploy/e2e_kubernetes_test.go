package deploy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// k8sStartOrder is the order a cluster converges to (pods restart until
// what they need answers); the test starts them in it directly. A new
// workload must be added here.
var k8sStartOrder = []string{"kubecord-redis", "kubecord-rest", "kubecord-gateway", "kubecord-state", "kubecord-ping"}

// TestKubernetesStackRuns runs one pod of every workload of the manifests
// as local processes: their args and their environment as the kubelet
// would build it (ConfigMap and Secret references resolved, $(VAR)
// expanded), Services mapped to loopback ports through their selectors and
// target ports, readiness asked like the kubelet asks it (gRPC health with
// the probe's service name). Discord is the simulator: the one variable the
// manifests do not hold is the REST service's Discord URL. It proves the
// wiring: gateway discovery through the headless Service name, the
// gateway's REST base through the passthrough, KUBECORD_BOTS built from
// the Secret, and the worker and the state service acking events.
func TestKubernetesStackRuns(t *testing.T) {
	t.Parallel()
	redisServer := requireRedis(t)
	_, all := loadManifests(t)
	o := index(t, all)
	var names []string
	byName := map[string]workload{}
	for _, w := range o.workloads {
		names = append(names, w.name)
		byName[w.name] = w
	}
	slices.Sort(names)
	if want := slices.Sorted(slices.Values(k8sStartOrder)); !slices.Equal(names, want) {
		t.Fatalf("workloads %v, but k8sStartOrder knows %v: add the new one in its place", names, want)
	}
	bins := buildStackBinaries(t)

	// pod ports: workload/containerPort -> a free loopback address.
	podAddr := map[string]string{}
	for _, w := range o.workloads {
		for _, c := range w.tmpl.Spec.Containers {
			for _, p := range c.Ports {
				podAddr[fmt.Sprintf("%s/%d", w.name, p.ContainerPort)] = freeAddr(t)
			}
		}
	}
	// Service name:port -> the address of the pod port it targets.
	svcAddr := map[string]string{}
	for name, svc := range o.services {
		ws := o.selecting(t, podSelector(svc))
		if len(ws) != 1 {
			t.Fatalf("Service %s selects %d workloads", name, len(ws))
		}
		for _, sp := range svc.Spec.Ports {
			target := targetOf(sp)
			cp, ok := containerPorts(ws[0].tmpl.Spec.Containers[0])[target.String()]
			if !ok {
				t.Fatalf("Service %s port %d: no container port %s", name, sp.Port, target.String())
			}
			svcAddr[fmt.Sprintf("%s:%d", name, sp.Port)] = podAddr[fmt.Sprintf("%s/%d", ws[0].name, cp.ContainerPort)]
		}
	}
	secrets := map[string]string{"discord-token": "local-development-token-for-discordsim", "auth-secret": composeSecret}

	stack := &stack{t: t}
	t.Cleanup(stack.stop)
	simAddr := freeAddr(t)
	sim := stack.start("sim", bins.kubecord, []string{"sim", "--addr=" + simAddr, "--resume-addr=" + freeAddr(t),
		"--token=" + secrets["discord-token"], "--guilds=20", "--rate=20"}, nil)
	waitFor(t, "sim", 30*time.Second, func() error {
		if err := sim.running(); err != nil {
			return stopWaiting{err}
		}
		_, err := httpGet(t, "http://"+simAddr+"/_sim/stats")
		return err
	})

	hostPort := regexp.MustCompile(`\b([a-z][a-z0-9-]*|0\.0\.0\.0):(\d+)\b`)
	for _, name := range k8sStartOrder {
		w := byName[name]
		c := w.tmpl.Spec.Containers[0]
		// rewrite maps the pod's own 0.0.0.0:P and every Service name:P to
		// loopback.
		rewrite := func(v string) string {
			return hostPort.ReplaceAllStringFunc(v, func(hp string) string {
				host, port, _ := strings.Cut(hp, ":")
				if host == "0.0.0.0" {
					if a, ok := podAddr[name+"/"+port]; ok {
						return a
					}
				}
				if a, ok := svcAddr[hp]; ok {
					return a
				}
				return hp
			})
		}
		env := podEnv(t, c, o, secrets)
		for k, v := range env {
			env[k] = rewrite(v)
		}
		var bin string
		var args []string
		switch img, _ := imageName(c.Image); img {
		case "kubecord":
			bin = bins.kubecord
			for _, a := range c.Args {
				args = append(args, rewrite(a))
			}
			if args[0] == "rest" {
				env["KUBECORD_DISCORD_URL"] = "http://" + simAddr + "/api"
			}
		case "kubecord-ping":
			bin = bins.ping
		case "redis":
			bin = redisServer
			args = []string{"--bind", "127.0.0.1", "--port", portOf(podAddr[fmt.Sprintf("%s/%d", name, c.Ports[0].ContainerPort)]), "--save", "", "--appendonly", "no"}
		default:
			t.Fatalf("%s: image %s: the test does not know how to run it", w.m, c.Image)
		}
		proc := stack.start(name, bin, args, env)
		if p := c.ReadinessProbe; p != nil {
			waitFor(t, name+" readiness", 60*time.Second, func() error {
				if err := proc.running(); err != nil {
					return stopWaiting{err}
				}
				return probe(t, p, c, podAddr, name)
			})
		}
	}

	metrics := podAddr["kubecord-gateway/9001"]
	waitFor(t, "events acked by groups state and ping", 60*time.Second, func() error {
		body, err := httpGet(t, "http://"+metrics+"/metrics")
		if err != nil {
			return err
		}
		for _, group := range []string{"state", "ping"} {
			if v := metricValue(body, `kubecord_gateway_group_members{group="`+group+`"}`); v != 1 {
				return fmt.Errorf("group %s has %v members, want 1", group, v)
			}
			if v := metricValue(body, `kubecord_gateway_group_acked_total{group="`+group+`"}`); v < 1 {
				return fmt.Errorf("group %s acked %v events", group, v)
			}
		}
		return nil
	})
}

func podSelector(svc *corev1.Service) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}
}

func targetOf(sp corev1.ServicePort) intstr.IntOrString {
	if sp.TargetPort.String() == "0" || sp.TargetPort.String() == "" {
		return intstr.FromInt32(sp.Port)
	}
	return sp.TargetPort
}

// podEnv builds a container's environment as the kubelet does: values from
// ConfigMaps of the set and from secrets, $(VAR) expanded from the
// variables defined before.
func podEnv(t *testing.T, c corev1.Container, o objects, secrets map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = envRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if val, ok := env[ref[2:len(ref)-1]]; ok {
					return val
				}
				return ref
			})
		case e.ValueFrom.ConfigMapKeyRef != nil:
			val, ok := envValue(e, o)
			if !ok {
				t.Fatalf("container %s: env %s: unresolved ConfigMap reference", c.Name, e.Name)
			}
			v = val
		case e.ValueFrom.SecretKeyRef != nil:
			val, ok := secrets[e.ValueFrom.SecretKeyRef.Key]
			if !ok {
				t.Fatalf("container %s: env %s: no test value for secret key %s", c.Name, e.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			v = val
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = c.Name + "-0" // the test runs one pod of each workload
		default:
			t.Fatalf("container %s: env %s: the test does not resolve %v", c.Name, e.Name, e.ValueFrom)
		}
		env[e.Name] = v
	}
	return env
}

// probe runs a readiness probe against the pod's loopback ports, as the
// kubelet would: gRPC health with the probe's service name, an HTTP GET, or
// a TCP connect; exec probes run the command from the image, which the test
// cannot, so it answers once the port of the container accepts connections.
func probe(t *testing.T, p *corev1.Probe, c corev1.Container, podAddr map[string]string, workload string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	switch {
	case p.GRPC != nil:
		addr := podAddr[fmt.Sprintf("%s/%d", workload, p.GRPC.Port)]
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer func() { _ = cc.Close() }() // a probe's connection
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: derefString(p.GRPC.Service)})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health of %q: %s", derefString(p.GRPC.Service), resp.GetStatus())
		}
		return nil
	case p.HTTPGet != nil:
		cp, ok := containerPorts(c)[p.HTTPGet.Port.String()]
		if !ok {
			return stopWaiting{fmt.Errorf("httpGet probe port %s is not a port of container %s", p.HTTPGet.Port.String(), c.Name)}
		}
		addr := podAddr[fmt.Sprintf("%s/%d", workload, cp.ContainerPort)]
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.HTTPGet.Path, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 { // the kubelet's rule
			return fmt.Errorf("GET %s: %s", p.HTTPGet.Path, resp.Status)
		}
		return nil
	case p.Exec != nil:
		for key, addr := range podAddr {
			if strings.HasPrefix(key, workload+"/") {
				return dialOnce(ctx, addr)
			}
		}
		return fmt.Errorf("%s has no port to check", workload)
	}
	return fmt.Errorf("the test runs grpc, httpGet and exec readiness probes, not %v", p.ProbeHandler)
}

func dialOnce(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
