#!/usr/bin/env bash
# A two-node Ray cluster on ONE machine: a head node and one worker node (1 CPU each by default), addressed on
# 127.0.0.1. It tries the cluster code paths (joining a cluster, `ray job submit`, a node dying mid-sweep) without
# a cluster; tests/pipeline/sweep/test_cluster.py drives it.
#
#   cluster/local_two_node.sh start         # head + worker; prints the addresses as KEY=VALUE lines
#   cluster/local_two_node.sh status        # the addresses, ALIVE_NODES=<n>, then `ray status`
#   cluster/local_two_node.sh worker-actors # the actors and tasks running on the worker node: "PID ray::Name..."
#   cluster/local_two_node.sh kill-worker   # SIGKILL the worker node's raylet: a node failure, head untouched
#   cluster/local_two_node.sh stop          # end every process of this cluster, and only of this cluster
#
#   equisweep sweep sweeps/quick.yaml --address 127.0.0.1:6390 --storage /tmp/equisweep-sweeps
#   ray job submit --address http://127.0.0.1:8275 -- \
#       "$PWD/.venv/bin/python" -m equisweep sweep "$PWD/sweeps/quick.yaml" --storage /tmp/equisweep-sweeps
# (a job's entrypoint runs in another directory with the cluster's PATH: give absolute paths). `ray job submit`
# needs the dashboard, which needs `pip install "ray[default]"`; without it the head starts with no dashboard and
# says so, and sweeps are driven with --address as above.
#
# Settings (environment):
#   RAY              the ray command (default: the `ray` next to $PYTHON, else `ray` on PATH)
#   PYTHON           used only to find `ray` when RAY is unset (default: python3 on PATH)
#   RAY_PORT         the head's GCS port: `--address 127.0.0.1:$RAY_PORT` (default 6390)
#   DASHBOARD_PORT   the dashboard and job server, http://127.0.0.1:$DASHBOARD_PORT (default 8275)
#   CLIENT_PORT      the Ray Client server, ray://127.0.0.1:$CLIENT_PORT, started only where ray[client] is
#                    installed (default RAY_PORT+9)
#   HEAD_CPUS, WORKER_CPUS   the CPUs each node advertises (default 1 and 1)
#   OBJECT_STORE_BYTES       each node's object store (default 256 MiB; sweeps pass little through it)
#   CLUSTER_DIR      this cluster's Ray temp dir: sessions, logs, sockets (default /tmp/equisweep-ray-$RAY_PORT;
#                    keep it short, Unix socket paths inside it are limited to 107 characters)
#   STOP_GRACE_S     seconds `stop` waits after SIGTERM before it SIGKILLs what is left (default 5)
#   RAY_AUTH_MODE    default `disabled`, see below
# The other fixed ports are RAY_PORT+1 ... RAY_PORT+9, so two such clusters, or this one and a default
# `ray start --head` (6379, 8265, 10001, 52365), never collide.
#
# Why not `ray stop`: it kills every Ray process on the machine, other people's clusters and embedded `ray.init()`
# instances included. `stop` ends the processes with CLUSTER_DIR on their command line (GCS, raylets, dashboard,
# monitors), this head's Ray Client server, and all their descendants (workers, agents and job drivers, which
# rename themselves ray::... and so no longer show it). `kill-worker` ends only the raylet listening on the worker's
# fixed node-manager port; the node's workers exit with it and the GCS marks the node dead within ~15-30 s.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status|addresses|worker-actors|kill-worker" >&2; exit 2; }
case "${1:-}" in start | stop | status | addresses | worker-actors | kill-worker) ;; *) usage ;; esac

RAY_PORT=${RAY_PORT:-6390}
DASHBOARD_PORT=${DASHBOARD_PORT:-8275}
HEAD_CPUS=${HEAD_CPUS:-1}
WORKER_CPUS=${WORKER_CPUS:-1}
OBJECT_STORE_BYTES=${OBJECT_STORE_BYTES:-268435456}
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/equisweep-ray-$RAY_PORT}
STOP_GRACE_S=${STOP_GRACE_S:-5}

HEAD_NODE_MANAGER_PORT=$((RAY_PORT + 1))
WORKER_NODE_MANAGER_PORT=$((RAY_PORT + 2))
HEAD_OBJECT_MANAGER_PORT=$((RAY_PORT + 3))
WORKER_OBJECT_MANAGER_PORT=$((RAY_PORT + 4))
HEAD_AGENT_PORT=$((RAY_PORT + 5))
WORKER_AGENT_PORT=$((RAY_PORT + 6))
HEAD_METRICS_PORT=$((RAY_PORT + 7))
WORKER_METRICS_PORT=$((RAY_PORT + 8))
CLIENT_PORT=${CLIENT_PORT:-$((RAY_PORT + 9))}

# Token authentication. With RAY_AUTH_MODE unset, Ray 2.60's `ray start --head` turns it on whenever
# $HOME/.ray/auth_token exists (and any earlier `ray.init()` under this HOME writes one), but a worker's
# `ray start --address` and every client given an explicit address (`--address HOST:PORT`, RAY_ADDRESS,
# `ray job submit --address http://...`) send the token only when RAY_AUTH_MODE=token is in their environment and
# are refused otherwise ("Authentication token is missing"), even from the same HOME. So whether this cluster came
# up and could be joined would depend on what had run before under the same HOME. The mode is therefore always
# explicit, and off by default: this is a throwaway cluster for one machine, its dashboard listens on 127.0.0.1
# only, and every address above is 127.0.0.1. Ray still binds the GCS and raylet ports on all interfaces (and
# reports the machine's own IP as the node address), so on a machine that untrusted hosts can reach run
# `RAY_AUTH_MODE=token cluster/local_two_node.sh start` and `export RAY_AUTH_MODE=token` wherever a client runs
# (same HOME, or RAY_AUTH_TOKEN). The cluster's processes inherit the mode, so a job's driver connects either way.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export RAY_USAGE_STATS_ENABLED=0

if [[ -z "${RAY:-}" ]]; then
    PYTHON=${PYTHON:-python3}
    RAY="$(dirname "$(command -v "$PYTHON")")/ray"
    [[ -x "$RAY" ]] || RAY=ray
fi
RAY_BIN=$(command -v "$RAY" || true)
[[ -n "$RAY_BIN" ]] || { echo "local_two_node: no ray command ($RAY); set RAY or PYTHON" >&2; exit 2; }
RAY_PYTHON=$(head -n 1 "$RAY_BIN" | sed -n 's/^#! *//p' | cut -d' ' -f1)  # the interpreter behind `ray`
[[ -x "$RAY_PYTHON" ]] || RAY_PYTHON=${PYTHON:-python3}

has_module() { "$RAY_PYTHON" -c "import $1" 2>/dev/null; }

re_escape() { sed 's/[][\\.*^$+?(){}|]/\\&/g' <<<"$1"; }

cluster_pids() {
    local roots all pid
    roots=$( { pgrep -f -- "$(re_escape "$CLUSTER_DIR")/" || true
               pgrep -f -- "ray\.util\.client\.server .*--port=$CLIENT_PORT( |$)" || true; } )
    [[ -z "$roots" ]] && return 0
    all=$(ps -eo pid=,ppid=)
    local -A seen=()
    local -a queue
    read -r -a queue <<<"$(echo $roots)"
    while [[ ${#queue[@]} -gt 0 ]]; do
        pid=${queue[0]}
        queue=("${queue[@]:1}")
        [[ -n "${seen[$pid]:-}" ]] && continue
        seen[$pid]=1
        echo "$pid"
        read -r -a children <<<"$(awk -v p="$pid" '$2 == p {printf "%s ", $1}' <<<"$all")"
        queue+=("${children[@]}")
    done
}

worker_raylet_pids() { pgrep -f -- "/raylet .*--node_manager_port=$WORKER_NODE_MANAGER_PORT( |$)" || true; }

print_addresses() {
    echo "RAY_ADDRESS=127.0.0.1:$RAY_PORT"
    if has_module ray.dashboard.optional_deps; then echo "DASHBOARD_URL=http://127.0.0.1:$DASHBOARD_PORT"; fi
    if has_module grpc; then echo "CLIENT_ADDRESS=ray://127.0.0.1:$CLIENT_PORT"; fi
    echo "CLUSTER_DIR=$CLUSTER_DIR"
}

start() {
    if [[ -n "$(cluster_pids)" ]]; then
        echo "local_two_node: a cluster already runs in $CLUSTER_DIR; run '$0 stop' first" >&2
        exit 1
    fi
    mkdir -p "$CLUSTER_DIR"
    local -a head_flags=()
    if has_module ray.dashboard.optional_deps; then
        head_flags+=(--include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT")
    else
        echo "local_two_node: no dashboard (ray[default] is not installed): \`ray job submit\` will not work;" \
             "drive sweeps with --address 127.0.0.1:$RAY_PORT" >&2
        head_flags+=(--include-dashboard=false)
    fi
    # `ray start` refuses a client port without ray[client] (grpcio) and otherwise defaults it to 10001.
    if has_module grpc; then head_flags+=(--ray-client-server-port="$CLIENT_PORT"); fi
    "$RAY" start --head --node-ip-address=127.0.0.1 --port="$RAY_PORT" "${head_flags[@]}" \
        --num-cpus="$HEAD_CPUS" --num-gpus=0 --object-store-memory="$OBJECT_STORE_BYTES" \
        --node-manager-port="$HEAD_NODE_MANAGER_PORT" --object-manager-port="$HEAD_OBJECT_MANAGER_PORT" \
        --dashboard-agent-listen-port="$HEAD_AGENT_PORT" --metrics-export-port="$HEAD_METRICS_PORT" \
        --temp-dir="$CLUSTER_DIR" --disable-usage-stats
    "$RAY" start --address="127.0.0.1:$RAY_PORT" --node-ip-address=127.0.0.1 \
        --num-cpus="$WORKER_CPUS" --num-gpus=0 --object-store-memory="$OBJECT_STORE_BYTES" \
        --node-manager-port="$WORKER_NODE_MANAGER_PORT" --object-manager-port="$WORKER_OBJECT_MANAGER_PORT" \
        --dashboard-agent-listen-port="$WORKER_AGENT_PORT" --metrics-export-port="$WORKER_METRICS_PORT" \
        --temp-dir="$CLUSTER_DIR" --disable-usage-stats
    print_addresses
}

stop() {
    local pids tries=0
    pids=$(cluster_pids)
    if [[ -z "$pids" ]]; then
        echo "local_two_node: nothing runs in $CLUSTER_DIR"
        return 0
    fi
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    while [[ -n "$(cluster_pids)" && $tries -lt $((2 * STOP_GRACE_S)) ]]; do
        sleep 0.5
        tries=$((tries + 1))
    done
    pids=$(cluster_pids)
    # shellcheck disable=SC2086
    if [[ -n "$pids" ]]; then kill -KILL $pids 2>/dev/null || true; fi
    echo "local_two_node: stopped the cluster in $CLUSTER_DIR"
}

kill_worker() {
    local pids
    pids=$(worker_raylet_pids)
    if [[ -z "$pids" ]]; then
        echo "local_two_node: no worker raylet on node-manager port $WORKER_NODE_MANAGER_PORT" >&2
        exit 1
    fi
    # shellcheck disable=SC2086
    kill -KILL $pids
    echo "local_two_node: killed the worker node's raylet (pid $(echo $pids))"
}

# Processes of the worker node running an actor or task (a Tune trial shows as ray::ImplicitFunc...): the raylet's
# children, less its idle workers and its agents.
worker_actors() {
    local raylet
    for raylet in $(worker_raylet_pids); do
        ps -o pid=,args= --ppid "$raylet" | awk '$2 ~ /^ray::/ && $2 !~ /^ray::(IDLE|DashboardAgent|RuntimeEnvAgent)/'
    done
}

status() {
    print_addresses
    # The GCS's own view (alive = not yet marked dead); a driver that joins for a moment, no dashboard needed.
    "$RAY_PYTHON" - "127.0.0.1:$RAY_PORT" <<'EOF'
import sys

import ray

ray.init(address=sys.argv[1], configure_logging=False, log_to_driver=False)
print(f"ALIVE_NODES={sum(node['Alive'] for node in ray.nodes())}")
EOF
    "$RAY" status --address="127.0.0.1:$RAY_PORT"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    kill-worker) kill_worker ;;
    worker-actors) worker_actors ;;
    status) status ;;
    addresses) print_addresses ;;
    *) usage ;;
esac
