#!/usr/bin/env bash
# Offline checks of the Kubernetes recipe, for CI and before a deploy. For every overlay in
# deploy/overlays/:
#   1. `kubectl kustomize` builds it;
#   2. every object validates against the Kubernetes schemas (kubernetes-validate, strict:
#      unknown fields are errors), for the oldest and the newest version we claim;
#   3. `zonegate check` accepts the config it ships, read from its ConfigMaps laid out as the
#      kubelet mounts them, with a dev SVID where spiffe-helper would write one
#      (deploy/mounts.py), and the manifest agrees with the config (ports, admin address,
#      termination grace period); the example overlays ship exactly config/policy/<zone>.
#
# Needs kubectl (with its built-in kustomize), python3 with kubernetes-validate (it brings
# PyYAML) and a zonegate binary:
#   python3 -m pip install kubernetes-validate==1.37.0
#   ZONEGATE=path/to/zonegate deploy/check.sh        (default: target/release/zonegate)
# Nothing it writes outlives it (one temporary directory); it reaches no network and no cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

ZONEGATE=${ZONEGATE:-target/release/zonegate}
KUBECTL=${KUBECTL:-kubectl}
PYTHON=${PYTHON:-python3}
# 1.29: the first release with native sidecar containers on by default (spiffe-helper).
K8S_VERSIONS=${K8S_VERSIONS:-1.29.0 1.37.0}

die() { echo "deploy/check.sh: $*" >&2; exit 1; }

[ -x "$ZONEGATE" ] || die "no zonegate binary at $ZONEGATE (build it, or set ZONEGATE)"
command -v "$KUBECTL" >/dev/null 2>&1 || die "kubectl not found (set KUBECTL)"
"$PYTHON" -c 'import kubernetes_validate, yaml' 2>/dev/null \
  || die "$PYTHON lacks kubernetes-validate: $PYTHON -m pip install kubernetes-validate==1.37.0"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$ZONEGATE" dev-certs --out "$scratch/certs" >/dev/null || die "zonegate dev-certs failed"

versions=()
for v in $K8S_VERSIONS; do versions+=(-k "$v"); done

failed=()
checked=0
for overlay in deploy/overlays/*/; do
  overlay=${overlay%/}
  zone=$(basename "$overlay")
  built="$scratch/$zone.yaml"
  echo "== $overlay"

  if ! "$KUBECTL" kustomize "$overlay" >"$built"; then
    failed+=("$overlay: kubectl kustomize failed")
    continue
  fi

  if ! "$PYTHON" -m kubernetes_validate --strict --quiet "${versions[@]}" "$built"; then
    failed+=("$overlay: objects do not validate against the Kubernetes schemas ($K8S_VERSIONS)")
  fi

  expected_policy=()
  [ -d "config/policy/$zone" ] && expected_policy=("config/policy/$zone")
  if ! config=$("$PYTHON" deploy/mounts.py "$built" "$scratch/$zone-root" "$scratch/certs" "${expected_policy[@]}"); then
    failed+=("$overlay: the manifest and the config it ships disagree (above)")
    continue
  fi
  if ! "$ZONEGATE" check --config "$config"; then
    failed+=("$overlay: zonegate check refused the config it ships (above)")
    continue
  fi
  checked=$((checked + 1))
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo >&2
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
[ "$checked" -gt 0 ] || die "no overlay found under deploy/overlays"
echo "deploy: $checked overlay(s) built, validated against Kubernetes $K8S_VERSIONS, and checked by zonegate"
