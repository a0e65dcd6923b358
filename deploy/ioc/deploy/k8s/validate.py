"""Offline validation of the manifests: strict decoding into the operators' published types,
and each custom resource against its CRD's own ``openAPIV3Schema``.

Two checkers, built from source committed under ``deploy/k8s/checker`` into a cache outside
the repository (``IOC_CACHE_DIR``, default ``~/.cache/ioc``), once per source version:

- Go (``checker/go``): ``k8s.io/api``, KEDA's ``apis`` and the Prometheus Operator's
  ``pkg/apis/monitoring``, decoded with ``sigs.k8s.io/json``'s strict mode (what the API
  server uses). The first build downloads the modules from the Go module proxy and compiles
  k8s.io/api and client-go: minutes on two cores; later runs reuse the binary.
- Java (``checker/java``): Strimzi's ``io.strimzi:api`` from Maven Central, decoded by Jackson
  with unknown properties failing (Strimzi 1.2 is built for Java 21: a JDK 21+ compiles and
  runs it, :func:`java_home`).

CloudNativePG publishes its types only as a Go module that the module proxy refuses (403), so
its ``Cluster`` has no typed decode: :func:`crd_validator` checks it against its CRD with
unknown fields refused (the API server's strict field validation on a structural schema).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema
import yaml

CHECKER: Final = Path(__file__).resolve().parents[3] / "k8s" / "checker"
"""``deploy/k8s/checker`` in a source checkout (the checkers are not part of the package)."""
CRDS: Final = CHECKER.parent / "crds"
PROMETHEUS_OPERATOR: Final = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION: Final = "v0.93.0"
"""The module whose zip ships the Prometheus Operator's CRDs, at the version of the
``pkg/apis/monitoring`` module the Go checker decodes with (checker/go/go.mod)."""
PROMETHEUS_OPERATOR_SUM: Final = "h1:AohlYJT+En8TmNpAcEUJ3GsaJTAqfEBwHmGTVpRm/Io="
KEDA: Final = "github.com/kedacore/keda/v2"

CRD_SHA256: Final[dict[str, str]] = {
    "strimzi-1.2.0-040-Crd-kafka.yaml": (
        "b5b27fc8d52068a77cde7c40d47c068023c7b4e92fc266c45200db2d2506392a"
    ),
    "strimzi-1.2.0-043-Crd-kafkatopic.yaml": (
        "36390f0731c699448076d4ee739e8b7f331d083e91a7fb71500aaa830ab1127e"
    ),
    "strimzi-1.2.0-044-Crd-kafkauser.yaml": (
        "c7e91b9b027a516b43dc7d369e781ee23a6ea177ae15fe0c33af6f722e26e05f"
    ),
    "strimzi-1.2.0-045-Crd-kafkanodepool.yaml": (
        "411c1b32ef8c1a6408ac9d4fe791115a6ce2b41107204588f976a3ed19be2430"
    ),
    "cnpg-1.30.0-postgresql.cnpg.io_clusters.yaml": (
        "ae47f4a00f6e998faef57e480f9a3960cd48ea16a79270861fc7442601507472"
    ),
}
"""The committed CRD copies and their hashes (deploy/k8s/crds/README.md)."""

Progress = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("IOC_CACHE_DIR") or Path.home() / ".cache" / "ioc")


def _digest(paths: Iterable[Path], *extra: str) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for item in extra:
        h.update(item.encode() + b"\0")
    return h.hexdigest()[:16]


def _run(argv: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, env=env, check=False, timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(argv)}):\n{proc.stderr[-4000:]}")
    return proc.stdout


# --- the checkers ----------------------------------------------------------------------------


def go_checker(progress: Progress = _stderr) -> Path:
    """The Go checker's binary, built once per version of its source."""
    src = CHECKER / "go"
    binary = cache_dir() / f"k8scheck-{_digest(src.glob('*.go'), *_files(src, 'go.mod', 'go.sum'))}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the Go toolchain (`go`) is not on PATH: it builds the checker")
    binary.parent.mkdir(parents=True, exist_ok=True)
    progress(
        f"k8s: building the Go checker into {binary} (first time: modules from the Go module "
        "proxy, then k8s.io/api and client-go compile, a few minutes on 2 cores)"
    )
    env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"}
    _run([go, "mod", "download"], src, "go mod download", env)
    progress("k8s: modules downloaded; compiling")
    tmp = binary.with_suffix(".tmp")
    _run([go, "build", "-o", str(tmp), "."], src, "go build", env)
    tmp.rename(binary)
    progress("k8s: Go checker built")
    return binary


def _files(folder: Path, *names: str) -> list[str]:
    return [(folder / name).read_text() for name in names]


def java_home() -> Path:
    """A JDK of version 21 or newer: ``IOC_JAVA_HOME``, ``JAVA_HOME`` or the machine's
    Temurin 25 (Strimzi's classes are Java 21 class files)."""
    candidates = [os.environ.get("IOC_JAVA_HOME"), os.environ.get("JAVA_HOME")]
    candidates += [str(p) for p in sorted(Path("/usr/lib/jvm").glob("temurin-2*-jdk*"))]
    for candidate in candidates:
        if not candidate:
            continue
        javac = Path(candidate) / "bin" / "javac"
        if javac.exists() and _java_major(javac) >= 21:
            return Path(candidate)
    raise RuntimeError(
        "no JDK 21+ found (IOC_JAVA_HOME, JAVA_HOME, /usr/lib/jvm/temurin-2*): Strimzi's "
        "io.strimzi:api 1.2 is built for Java 21"
    )


def _java_major(javac: Path) -> int:
    out = subprocess.run([str(javac), "-version"], capture_output=True, text=True, check=False)
    words = (out.stdout + out.stderr).split()
    try:
        return int(words[1].split(".")[0])
    except (IndexError, ValueError):
        return 0


@dataclass(frozen=True)
class JavaChecker:
    java: Path
    classpath: str

    def argv(self, *files: str) -> list[str]:
        return [str(self.java), "-cp", self.classpath, "ioc.k8scheck.StrimziCheck", *files]


def java_checker(progress: Progress = _stderr) -> JavaChecker:
    """The Strimzi checker: its dependencies resolved by Maven into ``~/.m2`` and its class
    compiled by javac into the cache, once per version of its source."""
    src = CHECKER / "java"
    sources = sorted(src.rglob("*.java"))
    home = java_home()
    out = cache_dir() / f"strimzi-check-{_digest([src / 'pom.xml', *sources], str(home))}"
    classes, cp_file = out / "classes", out / "classpath.txt"
    java = home / "bin" / "java"
    if (classes / "ioc" / "k8scheck" / "StrimziCheck.class").exists() and cp_file.exists():
        return JavaChecker(java, f"{classes}{os.pathsep}{cp_file.read_text().strip()}")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (`mvn`) is not on PATH: it resolves io.strimzi:api")
    out.mkdir(parents=True, exist_ok=True)
    progress(f"k8s: resolving io.strimzi:api with Maven (first time: ~30 s), into {out}")
    env = {**os.environ, "JAVA_HOME": str(home)}
    _run(
        [mvn, "-q", "-B", "dependency:build-classpath", f"-Dmdep.outputFile={cp_file}"],
        src,
        "mvn dependency:build-classpath",
        env,
    )
    progress("k8s: compiling the Strimzi checker")
    classpath = cp_file.read_text().strip()
    _run(
        [str(home / "bin" / "javac"), "--release", "21", "-d", str(classes), "-cp", classpath]
        + [str(s) for s in sources],
        src,
        "javac",
    )
    return JavaChecker(java, f"{classes}{os.pathsep}{classpath}")


@dataclass(frozen=True)
class Decoded:
    """One document as a checker saw it."""

    file: str
    index: int
    api_version: str
    kind: str
    name: str
    status: str  # ok | invalid | unknown-kind
    errors: tuple[str, ...]


def _decoded(stdout: str) -> list[Decoded]:
    results = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        results.append(
            Decoded(
                r["file"],
                r["index"],
                r["apiVersion"],
                r["kind"],
                r["name"],
                r["status"],
                tuple(r["errors"] or ()),
            )
        )
    return results


def go_decode(files: Iterable[Path], progress: Progress = _stderr) -> list[Decoded]:
    binary = go_checker(progress)
    return _decoded(_run([str(binary), *map(str, files)], CHECKER, "the Go checker"))


def java_decode(files: Iterable[Path], progress: Progress = _stderr) -> list[Decoded]:
    checker = java_checker(progress)
    return _decoded(_run(checker.argv(*map(str, files)), CHECKER, "the Strimzi checker"))


# --- CRD schemas -----------------------------------------------------------------------------


def _go_module_dir(module: str, version: str | None = None) -> Path:
    """Where a module of the checker's build lies in the module cache (downloaded if not)."""
    go = shutil.which("go") or "go"
    src = CHECKER / "go"
    env = {**os.environ, "GOFLAGS": "-mod=readonly"}
    if version is None:
        info = json.loads(_run([go, "list", "-m", "-json", module], src, "go list", env))
        if not Path(info.get("Dir", "")).is_dir():
            _run([go, "mod", "download", module], src, "go mod download", env)
            info = json.loads(_run([go, "list", "-m", "-json", module], src, "go list", env))
        return Path(info["Dir"])
    info = json.loads(
        _run([go, "mod", "download", "-json", f"{module}@{version}"], src, "go mod download", env)
    )
    if info.get("Sum") != PROMETHEUS_OPERATOR_SUM:
        raise RuntimeError(f"{module}@{version}: hash {info.get('Sum')}, expected a pinned one")
    return Path(info["Dir"])


def crd_files() -> list[Path]:
    """Every CRD the manifests' custom resources are checked against: the committed copies
    (hash-checked) and those the Go module zips ship."""
    files = []
    for name, sha in CRD_SHA256.items():
        path = CRDS / name
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != sha:
            raise RuntimeError(f"{path}: sha256 {actual}, deploy/k8s/crds/README.md says {sha}")
        files.append(path)
    keda = _go_module_dir(KEDA) / "config" / "crd" / "bases"
    files += [keda / "keda.sh_scaledobjects.yaml", keda / "keda.sh_triggerauthentications.yaml"]
    prom = (
        _go_module_dir(PROMETHEUS_OPERATOR, PROMETHEUS_OPERATOR_VERSION)
        / "example"
        / "prometheus-operator-crd"
    )
    files += [
        prom / f"monitoring.coreos.com_{plural}.yaml"
        for plural in ("alertmanagers", "podmonitors", "prometheusrules")
    ]
    return files


def structural_to_jsonschema(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural OpenAPI v3 schema as JSON Schema, with the API server's reading of
    its extensions: ``nullable``, ``x-kubernetes-int-or-string``, and unknown fields refused
    unless ``x-kubernetes-preserve-unknown-fields`` or ``additionalProperties`` allow them
    (strict field validation). ``metadata`` is left to the API server's own ObjectMeta."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: structural_to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = structural_to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [structural_to_jsonschema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [*out.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
    if (
        out.get("type") == "object"
        and "additionalProperties" not in out
        and not schema.get("x-kubernetes-preserve-unknown-fields")
        and "properties" in out
    ):
        out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def crd_validator(crd_paths: Iterable[Path]) -> Callable[[dict[str, Any]], list[str]]:
    """A function from a custom resource to its schema errors (``path: message``), against
    the served version of its CRD it names; a resource of no known CRD version is an error."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in crd_paths:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", False):
                    continue
                schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                schemas[(f"{group}/{version['name']}", kind)] = schema

    def validate(doc: dict[str, Any]) -> list[str]:
        schema = schemas.get((doc.get("apiVersion", ""), doc.get("kind", "")))
        if schema is None:
            return [f"no served CRD version for {doc.get('apiVersion')} {doc.get('kind')}"]
        validator = jsonschema.Draft7Validator(schema)
        return [
            f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        ]

    return validate


def documents_in(files: Iterable[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc
