#!/usr/bin/env bash
# Entry point of the fl_sim image (docker/Dockerfile), one role per container:
#
#   certs                   one-shot: CA, SuperLink certificate and SuperNode keys in $FL_SIM_CERTS
#                           (scripts/gen_certs.sh; does nothing when ca.crt already exists)
#   superlink               flower-superlink (TLS + SuperNode authentication), database in $FL_SIM_STATE
#   supernode I             registers certs/supernodes/node-I.key.pub, then flower-supernode
#                           with node config 'partition-id=I num-partitions=$FL_SIM_NUM_SUPERNODES'
#   [submit] [EXPERIMENT]   flwr run of EXPERIMENT (default experiments/smoke.toml) with
#                           node-partitions=true; results in $FL_SIM_RESULTS/<name>/<run_id>/
#   help | any other command (run as is, e.g. `fl-sim run experiments/smoke.toml`)
#
# Environment (defaults in docker-compose.yml): FL_SIM_SUPERLINK_HOST (how the others reach
# the SuperLink), FL_SIM_BIND (the SuperLink's listen address), FL_SIM_SUPERLINK_PORT,
# FL_SIM_SUPERNODE_BASE_PORT (SuperNode I serves its runtime API on BASE+I),
# FL_SIM_NUM_SUPERNODES, FL_SIM_TLS (1; 0 = plain HTTP with --insecure, opt-in only),
# FL_SIM_OVERRIDES ("client.lr=0.3;experiment.rounds=5"), FL_SIM_WAIT_S (deadline of every
# wait, default 300), FL_SIM_RUN_TIMEOUT_S (deadline of a submitted run, default 21600).
set -euo pipefail

CERTS=${FL_SIM_CERTS:-/certs}
STATE=${FL_SIM_STATE:-/state}
RESULTS=${FL_SIM_RESULTS:-/results}
LINK_HOST=${FL_SIM_SUPERLINK_HOST:-superlink}
BIND=${FL_SIM_BIND:-0.0.0.0}
PORT=${FL_SIM_SUPERLINK_PORT:-9092}
NODE_BASE_PORT=${FL_SIM_SUPERNODE_BASE_PORT:-9100}
N=${FL_SIM_NUM_SUPERNODES:-2}
TLS=${FL_SIM_TLS:-1}
WAIT_S=${FL_SIM_WAIT_S:-300}
CONNECTION=fl-sim-cluster
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1

log() { echo "[fl-sim $ROLE] $*" >&2; }
die() { log "error: $*"; exit 2; }

wait_for() {  # wait_for DESCRIPTION COMMAND...: poll every 2 s until COMMAND succeeds or WAIT_S passes
  local what=$1; shift
  local deadline=$((SECONDS + WAIT_S))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${WAIT_S}s waiting for $what (FL_SIM_WAIT_S)"
    sleep 2
  done
}

certs_ready() { [ -s "$CERTS/ca.crt" ] && [ -s "$CERTS/server.pem" ]; }

superlink_healthy() {
  python3 - "$LINK_HOST" "$PORT" "$TLS" "$CERTS/ca.crt" <<'PY'
import ssl, sys, urllib.request
host, port, tls, ca = sys.argv[1:5]
if tls == "1":
    ctx = ssl.create_default_context(cafile=ca)
    r = urllib.request.urlopen(f"https://{host}:{port}/health", timeout=3, context=ctx)
else:
    r = urllib.request.urlopen(f"http://{host}:{port}/health", timeout=3)
sys.exit(0 if r.status == 200 else 1)
PY
}

flwr_config() {  # the SuperLink connection `flwr` uses, in $FLWR_HOME/config.toml
  export FLWR_HOME=${FLWR_HOME:-/tmp/flwr-home}
  mkdir -p "$FLWR_HOME"
  {
    printf '[superlink]\ndefault = "%s"\n\n[superlink.%s]\naddress = "%s:%s"\n' \
      "$CONNECTION" "$CONNECTION" "$LINK_HOST" "$PORT"
    if [ "$TLS" = 1 ]; then printf 'root-certificates = "%s"\n' "$CERTS/ca.crt"
    else printf 'insecure = true\n'; fi
  } >"$FLWR_HOME/config.toml"
}

tls_check() {
  case "$TLS" in
    1) wait_for "certificates in $CERTS (the certs service)" certs_ready ;;
    0) log "WARNING: FL_SIM_TLS=0: plain HTTP, no SuperNode authentication" ;;
    *) die "FL_SIM_TLS must be 1 or 0, got '$TLS'" ;;
  esac
}

ROLE=${1:-help}
[ $# -gt 0 ] && shift
# `docker-compose run --rm submit experiments/x.toml` replaces the service's command, so a
# first argument that is an experiment file means `submit` it.
case "$ROLE" in *.toml) set -- "$ROLE" "$@"; ROLE=submit ;; esac
cd /app

case "$ROLE" in
  certs)
    if [ -s "$CERTS/ca.crt" ]; then
      log "$CERTS/ca.crt exists; keeping the existing certificates and keys"
      exit 0
    fi
    # SANs: 127.0.0.1 and localhost (host networking) plus the compose service name.
    exec /app/scripts/gen_certs.sh "$CERTS" "$N" "superlink${FL_SIM_CERT_HOSTNAMES:+,$FL_SIM_CERT_HOSTNAMES}"
    ;;

  superlink)
    tls_check
    mkdir -p "$STATE" "$RESULTS"
    export FLWR_HOME=$STATE/flwr-home
    cmd=(flower-superlink --isolation subprocess --host "$BIND" --port "$PORT"
         --database "$STATE/superlink.db" --disable-runtime-dependency-installation)
    if [ "$TLS" = 1 ]; then
      cmd+=(--ssl-ca-certfile "$CERTS/ca.crt" --ssl-certfile "$CERTS/server.pem"
            --ssl-keyfile "$CERTS/server.key" --enable-supernode-auth)
    else
      cmd+=(--insecure)
    fi
    log "${cmd[*]}"
    exec "${cmd[@]}"
    ;;

  supernode)
    i=${1:?usage: supernode PARTITION_ID}
    [[ "$i" =~ ^[0-9]+$ ]] && [ "$i" -lt "$N" ] || die "partition id '$i' not in 0..$((N - 1))"
    ROLE="supernode $i"
    tls_check
    flwr_config
    wait_for "the SuperLink at $LINK_HOST:$PORT/health" superlink_healthy
    cmd=(flower-supernode --superlink "$LINK_HOST:$PORT" --port "$((NODE_BASE_PORT + i))"
         --isolation subprocess --node-config "partition-id=$i num-partitions=$N")
    if [ "$TLS" = 1 ]; then
      key=$CERTS/supernodes/node-$i.key
      [ -s "$key" ] || die "$key missing (the certs service writes FL_SIM_NUM_SUPERNODES=$N keys)"
      # Only registered keys may connect (--enable-supernode-auth on the SuperLink). A key
      # registered by an earlier start of this container is refused a second time: go on.
      if out=$(flwr supernode register "$key.pub" "$CONNECTION" 2>&1); then
        log "registered $key.pub"
      else
        log "flwr supernode register $key.pub did not succeed (already registered after a restart?):"
        echo "$out" | tail -5 >&2
      fi
      cmd+=(--root-certificates "$CERTS/ca.crt" --auth-supernode-private-key "$key")
    else
      cmd+=(--insecure)
    fi
    log "${cmd[*]}"
    exec "${cmd[@]}"
    ;;

  submit)
    experiment=${1:-experiments/smoke.toml}
    case "$experiment" in /*) ;; *) experiment=/app/$experiment ;; esac
    [ -f "$experiment" ] || die "$experiment not found in the image"
    tls_check
    flwr_config
    wait_for "the SuperLink at $LINK_HOST:$PORT/health" superlink_healthy
    rc_file=$FLWR_HOME/run_config.toml
    {
      printf 'experiment = "%s"\noutput-dir = "%s"\nnode-partitions = true\n' "$experiment" "$RESULTS"
      [ -z "${FL_SIM_OVERRIDES:-}" ] || printf 'overrides = "%s"\n' "$FL_SIM_OVERRIDES"
    } >"$rc_file"
    log "flwr run /app $CONNECTION --stream --run-config: $(tr '\n' ' ' <"$rc_file")"
    out=$FLWR_HOME/run.log
    set +e
    timeout "${FL_SIM_RUN_TIMEOUT_S:-21600}" flwr run /app "$CONNECTION" --stream --run-config "$rc_file" 2>&1 | tee "$out"
    code=${PIPESTATUS[0]}
    set -e
    run_dir=$(sed -n 's/^Run directory: //p' "$out" | tail -1)
    if [ "$code" -ne 0 ] || [ -z "$run_dir" ]; then
      log "the run did not finish (flwr run exit code $code${run_dir:-, no 'Run directory:' line})"
      exit 1
    fi
    log "finished: $run_dir (in the results volume)"
    ;;

  help|-h|--help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    ;;

  *)
    exec "$ROLE" "$@"
    ;;
esac
