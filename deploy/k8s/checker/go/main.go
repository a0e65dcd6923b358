// Command k8scheck decodes Kubernetes manifests strictly into the typed API structs the
// projects publish as Go modules, the way an API server with fieldValidation=Strict would:
// an unknown or duplicated field, or a value of the wrong type, is an error.
//
// Usage: k8scheck FILE.yaml... ; one JSON line per YAML document on stdout:
//
//	{"file": "...", "index": 0, "apiVersion": "...", "kind": "...", "name": "...",
//	 "status": "ok" | "invalid" | "unknown-kind", "errors": ["..."]}
//
// "unknown-kind" means this checker has no Go type for it (Strimzi and CloudNativePG are
// checked elsewhere, see deploy/k8s/README.md); the caller decides whether that is allowed.
// Exit status: 0 when every document was read (whatever its status), 2 on a read error.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

type gvk struct{ apiVersion, kind string }

// types maps each apiVersion/kind to a constructor of its Go struct.
var types = map[gvk]func() any{
	{"v1", "ConfigMap"}:                            func() any { return &corev1.ConfigMap{} },
	{"v1", "Secret"}:                               func() any { return &corev1.Secret{} },
	{"v1", "Service"}:                              func() any { return &corev1.Service{} },
	{"v1", "ServiceAccount"}:                       func() any { return &corev1.ServiceAccount{} },
	{"v1", "Namespace"}:                            func() any { return &corev1.Namespace{} },
	{"apps/v1", "Deployment"}:                      func() any { return &appsv1.Deployment{} },
	{"networking.k8s.io/v1", "NetworkPolicy"}:      func() any { return &networkingv1.NetworkPolicy{} },
	{"batch/v1", "Job"}:                            func() any { return &batchv1.Job{} },
	{"policy/v1", "PodDisruptionBudget"}:           func() any { return &policyv1.PodDisruptionBudget{} },
	{"keda.sh/v1alpha1", "ScaledObject"}:           func() any { return &kedav1alpha1.ScaledObject{} },
	{"keda.sh/v1alpha1", "TriggerAuthentication"}:  func() any { return &kedav1alpha1.TriggerAuthentication{} },
	{"monitoring.coreos.com/v1", "PrometheusRule"}: func() any { return &monitoringv1.PrometheusRule{} },
	{"monitoring.coreos.com/v1", "Alertmanager"}:   func() any { return &monitoringv1.Alertmanager{} },
	{"monitoring.coreos.com/v1", "ServiceMonitor"}: func() any { return &monitoringv1.ServiceMonitor{} },
	{"monitoring.coreos.com/v1", "PodMonitor"}:     func() any { return &monitoringv1.PodMonitor{} },
	{"monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"}: func() any {
		return &monitoringv1alpha1.AlertmanagerConfig{}
	},
}

type result struct {
	File       string   `json:"file"`
	Index      int      `json:"index"`
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Name       string   `json:"name"`
	Status     string   `json:"status"`
	Errors     []string `json:"errors"`
}

func check(file string, index int, doc []byte) result {
	r := result{File: file, Index: index, Errors: []string{}}
	// YAMLToJSONStrict refuses duplicate keys, which a lenient YAML reader silently merges.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		r.Status, r.Errors = "invalid", []string{err.Error()}
		return r
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		r.Status, r.Errors = "invalid", []string{err.Error()}
		return r
	}
	r.APIVersion, r.Kind, r.Name = head.APIVersion, head.Kind, head.Metadata.Name
	newObj, ok := types[gvk{head.APIVersion, head.Kind}]
	if !ok {
		r.Status = "unknown-kind"
		return r
	}
	// sigs.k8s.io/json is the decoder kube-apiserver uses: case-sensitive field names, and
	// with DisallowUnknownFields it reports every unknown or duplicate field, not just one.
	strict, err := sigsjson.UnmarshalStrict(js, newObj(), sigsjson.DisallowUnknownFields)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	for _, e := range strict {
		r.Errors = append(r.Errors, e.Error())
	}
	r.Status = "ok"
	if len(r.Errors) > 0 {
		r.Status = "invalid"
	}
	return r
}

func checkFile(path string, out *json.Encoder) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for index := 0; ; {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		if err := out.Encode(check(path, index, doc)); err != nil {
			return err
		}
		index++
	}
}

// stripComments drops whole-line comments, so a file's header is not taken for a document.
func stripComments(doc []byte) []byte {
	var kept [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			kept = append(kept, line)
		}
	}
	return bytes.Join(kept, []byte("\n"))
}

func main() {
	out := json.NewEncoder(os.Stdout)
	for _, path := range os.Args[1:] {
		if err := checkFile(path, out); err != nil {
			fmt.Fprintln(os.Stderr, "k8scheck:", err)
			os.Exit(2)
		}
	}
}
