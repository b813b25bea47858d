#!/usr/bin/env bash
# End-to-end check of the docker-compose cluster on a machine with no Docker engine running,
# no image registry and no bridge networking (run as root):
#
#   1. apt-get install docker.io docker-compose debootstrap (only what is missing)
#   2. start a private dockerd (--bridge=none --iptables=false --storage-driver=vfs, its own
#      socket, data root and exec root under $WORK); only that PID is stopped at the end
#   3. base image fl-sim-base:bookworm = debootstrap bookworm (Python 3.11) + docker import
#      (skipped when the image is already in $WORK's data root)
#   4. project image (docker/Dockerfile, BuildKit, --build-arg BASE_IMAGE=fl-sim-base:bookworm,
#      $PIP_CERT as the extra_ca build secret when set)
#   5. docker-compose -f docker-compose.yml -f docker/compose.hostnet.yml: certs, superlink
#      (TLS + SuperNode authentication), supernode-0/1, then `run submit` of a 2-round
#      experiments/smoke.toml; checks the run directory in the results volume, then that a
#      SuperNode with an unregistered key is refused
#   6. docker-compose down -v, stop the dockerd started here
#
#   scripts/compose_e2e.sh            (or: make test-compose)
#
# Environment: FL_SIM_E2E_DIR (work dir, default /var/tmp/fl-sim-e2e; keeps the debootstrap
# tree and dockerd's data root, so a second run reuses the base image and build cache),
# FL_SIM_E2E_CLEAN=1 (also delete the data root at the end), FL_SIM_E2E_TIMEOUT_S (bound of
# the submitted run, default 1800), PIP_CERT (extra CA bundle for pip inside the build).
# Exit 0 only when the run finished and its results are complete.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${FL_SIM_E2E_DIR:-/var/tmp/fl-sim-e2e}
BASE_TAG=fl-sim-base:bookworm
IMAGE=fl-sim:e2e
PROJECT=flsime2e
RUN_TIMEOUT=${FL_SIM_E2E_TIMEOUT_S:-1800}
SOCK=$WORK/docker.sock
T0=$SECONDS

step() { echo "=== [compose-e2e +$((SECONDS - T0))s] $*"; }
die() { echo "compose-e2e: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (dockerd, debootstrap, apt-get)"
cd "$REPO"
mkdir -p "$WORK"

# ---------------------------------------------------------------- 1. packages
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# The engine's own client (Debian's, same API version and BuildKit built in) when present.
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
export DOCKER_HOST=unix://$SOCK

# ---------------------------------------------------------------- 2. dockerd
DOCKERD_PID=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$DOCKERD_PID" ]; then
    if [ -n "${COMPOSE_UP:-}" ]; then
      step "docker-compose down -v"
      "${COMPOSE[@]}" --profile submit down -v --remove-orphans >"$WORK/compose-down.log" 2>&1 \
        || tail -20 "$WORK/compose-down.log"
    fi
    step "stopping dockerd (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID"
    wait "$DOCKERD_PID" 2>/dev/null
    # dockerd leaves its default network namespace bind-mounted under its exec root.
    grep -o " $WORK/docker-exec/netns/[^ ]*" /proc/mounts | while read -r m; do umount "$m"; done
    if [ "${FL_SIM_E2E_CLEAN:-0}" = 1 ]; then
      step "removing $WORK/docker (FL_SIM_E2E_CLEAN=1)"
      rm -rf "$WORK/docker" "$WORK/docker-exec"
    fi
  fi
  [ -n "${SECRET_TMP:-}" ] && rm -f "$SECRET_TMP"
  step "exit $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if $DOCKER info >/dev/null 2>&1; then
  die "a dockerd already answers on $SOCK (not started by this run); stop it first"
fi
step "starting dockerd (vfs, no bridge, no iptables) on $SOCK"
rm -f "$SOCK"
dockerd --bridge=none --iptables=false --storage-driver=vfs \
  --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" --pidfile "$WORK/dockerd.pid" \
  --host "$DOCKER_HOST" >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 60); do
  $DOCKER info >/dev/null 2>&1 && break
  kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$WORK/dockerd.log"; die "dockerd exited"; }
  sleep 1
done
$DOCKER info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; die "dockerd did not answer in 60 s"; }

# ---------------------------------------------------------------- 3. base image
if ! $DOCKER image inspect "$BASE_TAG" >/dev/null 2>&1; then
  rootfs=$WORK/rootfs
  if [ ! -e "$rootfs/.fl-sim-complete" ]; then
    step "debootstrap bookworm -> $rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase \
      --include=python3,python3-venv,python3-pip,openssl,openssh-client,ca-certificates \
      bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    touch "$rootfs/.fl-sim-complete"
  fi
  step "docker import $rootfs -> $BASE_TAG"
  tar -C "$rootfs" --exclude=./.fl-sim-complete --numeric-owner -c . \
    | $DOCKER import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' - "$BASE_TAG" >/dev/null
fi
$DOCKER run --rm --network host "$BASE_TAG" python3 --version

# ---------------------------------------------------------------- 4. project image
step "building $IMAGE (docker/Dockerfile, BASE_IMAGE=$BASE_TAG)"
secret=()
if [ -n "${PIP_CERT:-}" ] && [ -s "$PIP_CERT" ]; then
  secret=(--secret "id=extra_ca,src=$PIP_CERT")
fi
DOCKER_BUILDKIT=1 $DOCKER build --network host --progress plain -f docker/Dockerfile \
  --build-arg "BASE_IMAGE=$BASE_TAG" "${secret[@]}" -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; die "docker build failed (log: $WORK/build.log)"; }
grep -E "^#[0-9]+ DONE|flwr version|Python 3" "$WORK/build.log" | tail -5 || true
# Earlier builds' images and the build cache (each a full copy of ~3 GB with vfs) are not
# worth keeping: any change in the checkout reruns the one install step anyway.
$DOCKER image prune -f >/dev/null || true
$DOCKER builder prune -af >/dev/null || true

# ---------------------------------------------------------------- 5. compose
free_ports() {  # a free port P with P+1 .. P+N also free on 127.0.0.1
  python3 - "$1" <<'PY'
import socket, sys
n = int(sys.argv[1])
for base in range(20000, 60000, 97):
    socks = []
    try:
        for p in range(base, base + n + 1):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(base); break
PY
}
port=$(free_ports 3)  # SuperLink, 2 SuperNodes, 1 unregistered SuperNode
export FL_SIM_IMAGE=$IMAGE COMPOSE_PROJECT_NAME=$PROJECT FL_SIM_NUM_SUPERNODES=2 \
  FL_SIM_SUPERLINK_PORT=$port FL_SIM_SUPERNODE_BASE_PORT=$((port + 1)) FL_SIM_TLS=1
# With vfs, creating a container copies the whole image: far beyond compose's 60 s default.
export COMPOSE_HTTP_TIMEOUT=${COMPOSE_HTTP_TIMEOUT:-1200}
COMPOSE=(docker-compose -f docker-compose.yml -f docker/compose.hostnet.yml)
COMPOSE_UP=1
# Leftovers of an interrupted earlier run (same project name) would keep old certs.
"${COMPOSE[@]}" --profile submit down -v --remove-orphans >/dev/null 2>&1 || true

step "certs (one-shot)"
"${COMPOSE[@]}" run --rm certs
step "up: superlink on 127.0.0.1:$port (TLS, SuperNode auth), supernode-0, supernode-1"
"${COMPOSE[@]}" up -d --no-build --no-deps superlink supernode-0 supernode-1

# The CA bundle must not be in the image (checked in a running container: with vfs every
# extra container costs a full copy of the image).
if "${COMPOSE[@]}" exec -T superlink sh -c 'ls -A /run/secrets 2>/dev/null; find / -xdev -name "extra_ca*" 2>/dev/null' | grep -q .; then
  die "the extra_ca build secret is visible in $IMAGE"
fi

step "submit: experiments/smoke.toml (2 rounds, node-partitions=true)"
set +e
timeout "$RUN_TIMEOUT" "${COMPOSE[@]}" run --rm --no-deps submit experiments/smoke.toml \
  2>&1 | tee "$WORK/submit.log"
code=${PIPESTATUS[0]}
set -e
"${COMPOSE[@]}" logs --no-color superlink supernode-0 supernode-1 >"$WORK/services.log" 2>&1 || true
if [ "$code" -ne 0 ]; then
  tail -60 "$WORK/services.log"
  die "the submitted run failed (exit $code); service logs: $WORK/services.log"
fi

step "checking the results volume"
"${COMPOSE[@]}" exec -T superlink python3 - <<'PY'
import json, sys
from pathlib import Path
runs = sorted(p for p in Path("/results/smoke").iterdir() if p.is_dir())
assert len(runs) == 1, f"expected one run directory, found {runs}"
run = runs[0]
for name in ("config.resolved.toml", "manifest.json", "metrics.jsonl", "summary.json", "final_weights.npz"):
    assert (run / name).is_file(), f"{run}/{name} missing"
rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
rounds = sorted({r["round"] for r in rows if "round" in r})
assert rounds[-1] == 2, f"rounds in metrics.jsonl: {rounds}"
summary = json.loads((run / "summary.json").read_text())
print(f"results OK: {run} ({len(rows)} metrics rows, rounds {rounds}); summary keys: {sorted(summary)[:8]}")
PY
grep -q -- "--enable-supernode-auth" "$WORK/services.log" || die "the SuperLink did not run with --enable-supernode-auth"
grep -q "registered /certs/supernodes/node-1.key.pub" "$WORK/services.log" || die "supernode-1 did not register its key"
step "a SuperNode with an unregistered key is refused"
set +e
rogue=$("${COMPOSE[@]}" exec -T superlink sh -c "
  rm -f /tmp/rogue.key /tmp/rogue.key.pub &&
  ssh-keygen -q -t ecdsa -b 384 -N '' -f /tmp/rogue.key &&
  timeout 180 flower-supernode --superlink 127.0.0.1:$port --root-certificates /certs/ca.crt \
    --auth-supernode-private-key /tmp/rogue.key --port $((port + 3)) --isolation subprocess \
    --max-retries 1 --max-wait-time 30 --node-config 'partition-id=0 num-partitions=2'" 2>&1)
rogue_rc=$?
set -e
echo "$rogue" >"$WORK/rogue.log"
"${COMPOSE[@]}" logs --no-color superlink >"$WORK/superlink.log" 2>&1 || true
[ "$rogue_rc" -ne 0 ] && [ "$rogue_rc" -ne 124 ] \
  || die "the unregistered SuperNode was not refused (exit $rogue_rc; $WORK/rogue.log)"
grep -q "Failed to activate SuperNode" "$WORK/rogue.log" \
  || die "no 'Failed to activate SuperNode' from the unregistered SuperNode ($WORK/rogue.log)"
grep -q "No SuperNode found with the given public key" "$WORK/superlink.log" \
  || die "the SuperLink did not log the refusal ($WORK/superlink.log)"
echo "refused: flower-supernode exit $rogue_rc, SuperLink: No SuperNode found with the given public key"
step "compose e2e passed"
