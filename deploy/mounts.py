"""Lays out, under a scratch root, the files the gateway container of a built overlay would see.

Used by deploy/check.sh so that `zonegate check` runs on exactly what the overlay ships:

    python3 deploy/mounts.py ZONE.yaml ROOT CERTS_DIR [EXPECTED_POLICY_DIR]

ZONE.yaml is `kubectl kustomize deploy/overlays/ZONE`; CERTS_DIR holds `zonegate dev-certs`
output. Every volume the `zonegate` container mounts is laid out at ROOT + its mountPath:

- a ConfigMap from the build as the kubelet writes it: the keys in a timestamped directory,
  `..data` pointing at it, and one symlink per key through `..data` (the layout whose swap the
  gateway's watcher follows);
- a ConfigMap kept outside the overlay from a stand-in (STAND_INS below);
- the volume spiffe-helper writes into (its `cert_dir`) with the dev SVID, key and bundle under
  the file names its config gives.

The config named by the container's `--config` is then rewritten so that paths under a mount
point at ROOT (the one change made to it), and checked against the manifest where the two must
agree: listener and admin ports, the admin address, and the termination grace period against
`[shutdown]`. With EXPECTED_POLICY_DIR, the policy ConfigMap must hold exactly its *.toml files.

Prints the rewritten config's path; exits 1 with every disagreement found.
"""

import os
import re
import sys
import tomllib
from pathlib import Path

import yaml

# ConfigMaps an overlay mounts but does not build, and what stands in for them here.
# zonegate-jwt-bundle: the SPIRE JWT bundle, refreshed out of band (docs/deploy.md).
STAND_INS = {
    "zonegate-jwt-bundle": {"jwt-bundle.json": "jwt-bundle.json"},
}

# The dev PKI's files for the SVID, key and bundle spiffe-helper would write.
HELPER_FILES = {
    "svid_file_name": "gateway.crt",
    "svid_key_file_name": "gateway.key",
    "svid_bundle_file_name": "ca.crt",
}

# The gateway's own default; see docs/operations.md, Shutdown.
DEFAULT_DRAIN_S = 10
# After the drain Pingora gives its services this long to stop (crates/gateway/src/server.rs).
SHUTDOWN_TAIL_S = 1


class Problems(list):
    def add(self, message):
        self.append(message)


def write_configmap(directory, data):
    """Writes `data` the way the kubelet's atomic writer lays out a ConfigMap volume."""
    stamp = "..2000_01_01_00_00_00.000000000"
    (directory / stamp).mkdir(parents=True)
    for key, value in data.items():
        (directory / stamp / key).write_text(value)
        (directory / key).symlink_to(Path("..data") / key)
    (directory / "..data").symlink_to(stamp)


def helper_settings(text):
    """The `key = "value"` settings of a spiffe-helper HCL file (all this check needs)."""
    return dict(re.findall(r'^\s*([a-z_]+)\s*=\s*"([^"]*)"', text, re.MULTILINE))


def arg_after(args, *flags):
    for i, arg in enumerate(args):
        if arg in flags and i + 1 < len(args):
            return args[i + 1]
    return None


def main(built, root, certs, expected_policy=None):
    problems = Problems()
    docs = [d for d in yaml.safe_load_all(built.read_text()) if d]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    if len(deployments) != 1:
        sys.exit(f"expected one Deployment in the build, found {len(deployments)}")
    pod = deployments[0]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    containers = {c["name"]: c for c in pod.get("containers", [])}
    sidecars = {c["name"]: c for c in pod.get("initContainers", [])}
    gateway = containers.get("zonegate")
    if gateway is None:
        sys.exit("the Deployment has no container named zonegate")
    mounts = {m["name"]: m for m in gateway.get("volumeMounts", [])}

    # spiffe-helper: which volume it writes the SVID into, under which names.
    helper_out = None
    helper = sidecars.get("spiffe-helper")
    if helper is not None:
        conf_path = arg_after(helper.get("args", []), "-config", "--config")
        for m in helper.get("volumeMounts", []):
            cm = volumes[m["name"]].get("configMap")
            if cm and conf_path and conf_path.startswith(m["mountPath"].rstrip("/") + "/"):
                key = os.path.relpath(conf_path, m["mountPath"])
                settings = helper_settings(configmaps.get(cm["name"], {}).get(key, ""))
                break
        else:
            sys.exit(f"spiffe-helper's config {conf_path!r} is not in a ConfigMap it mounts")
        for m in helper.get("volumeMounts", []):
            if m["mountPath"].rstrip("/") == settings.get("cert_dir", "").rstrip("/"):
                helper_out = (m["name"], settings)
        if helper_out is None:
            problems.add(f"spiffe-helper's cert_dir {settings.get('cert_dir')!r} is none of its volumes")
        elif helper_out[0] not in mounts:
            problems.add(f"the zonegate container does not mount {helper_out[0]!r}, where spiffe-helper writes the SVID")

    for name, mount in mounts.items():
        if mount.get("subPath"):
            problems.add(f"volume {name!r} is mounted with subPath: the kubelet never updates it, so it never reloads")
        target = root / mount["mountPath"].lstrip("/")
        volume = volumes[name]
        if "configMap" in volume:
            cm = volume["configMap"]["name"]
            if cm in configmaps:
                write_configmap(target, configmaps[cm])
            elif cm in STAND_INS:
                write_configmap(target, {k: (certs / v).read_text() for k, v in STAND_INS[cm].items()})
            else:
                problems.add(f"ConfigMap {cm!r} is mounted but neither built by the overlay nor known to deploy/mounts.py")
        elif helper_out and name == helper_out[0]:
            target.mkdir(parents=True)
            for setting, source in HELPER_FILES.items():
                if setting not in helper_out[1]:
                    problems.add(f"spiffe-helper's config sets no {setting}")
                    continue
                (target / helper_out[1][setting]).write_bytes((certs / source).read_bytes())
        else:
            target.mkdir(parents=True, exist_ok=True)

    if expected_policy is not None:
        policy_volume = volumes.get("policy", {}).get("configMap", {}).get("name")
        shipped = configmaps.get(policy_volume, {})
        expected = {p.name: p.read_text() for p in sorted(expected_policy.glob("*.toml"))}
        if shipped != expected:
            how = {
                "missing": sorted(set(expected) - set(shipped)),
                "extra": sorted(set(shipped) - set(expected)),
                "different": sorted(k for k in set(expected) & set(shipped) if expected[k] != shipped[k]),
            }
            problems.add(
                f"the policy ConfigMap is not {expected_policy}/*.toml ("
                + "; ".join(f"{k}: {', '.join(v)}" for k, v in how.items() if v)
                + "): copy the files into the overlay's policy/ and list them in its kustomization.yaml"
            )

    config_arg = arg_after(gateway.get("args", []), "--config", "-c")
    if config_arg is None:
        sys.exit("the zonegate container's args name no --config")
    config_path = root / config_arg.lstrip("/")
    if not config_path.exists():
        sys.exit(f"the config {config_arg} is in none of the zonegate container's volumes")

    text = config_path.read_text()
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        sys.exit(f"{config_arg}: {e}")
    # Longest mount first, so /etc/zonegate/config/x never matches a shorter /etc/zonegate.
    for mount_path in sorted((m["mountPath"].rstrip("/") for m in mounts.values()), key=len, reverse=True):
        text = re.sub(r'"' + re.escape(mount_path) + r'(/[^"]*)?"', lambda m: f'"{root}{m.group(0)[1:-1]}"', text)
    # Through the ..data symlink into the timestamped directory: the volume's own file.
    config_path.resolve().write_text(text)

    ports = {p["containerPort"]: p.get("name") for p in gateway.get("ports", [])}
    for listener in config.get("listener", []):
        port = int(listener["address"].rsplit(":", 1)[1])
        if port not in ports:
            problems.add(f"listener {listener['address']}: no containerPort {port} on the zonegate container")
    admin = config.get("admin", {}).get("address")
    if admin is None:
        problems.add("no [admin] address: the probes need /readyz and /healthz")
    else:
        host, port = admin.rsplit(":", 1)
        if host in ("127.0.0.1", "localhost", "[::1]"):
            problems.add(f"[admin] address {admin} is loopback: the kubelet cannot probe it")
        if ports.get(int(port)) != "admin":
            problems.add(f"[admin] address {admin}: the containerPort named admin is not {port}")
    shutdown = config.get("shutdown", {})
    needed = shutdown.get("grace_period_s", 0) + shutdown.get("drain_timeout_s", DEFAULT_DRAIN_S) + SHUTDOWN_TAIL_S
    granted = pod.get("terminationGracePeriodSeconds", 30)
    if granted <= needed:
        problems.add(
            f"terminationGracePeriodSeconds {granted} must exceed grace_period_s + drain_timeout_s + "
            f"{SHUTDOWN_TAIL_S} = {needed}, or the kubelet kills the gateway mid-drain"
        )

    if problems:
        for p in problems:
            print(f"overlay {built.stem}: {p}", file=sys.stderr)
        sys.exit(1)
    print(config_path)


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    main(
        Path(sys.argv[1]),
        Path(sys.argv[2]).resolve(),
        Path(sys.argv[3]),
        Path(sys.argv[4]) if len(sys.argv) == 5 else None,
    )
