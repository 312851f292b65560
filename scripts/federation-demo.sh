#!/usr/bin/env bash
# The federation evidence (results/federation.md): the consumer trio served
# by three `nsed agent serve` processes through a real nats-server, against
# the same bench in one process.
#
#   1. transport: signed pings through each agent (latency, messages/s),
#      for 1 KiB, 64 KiB and 2 MB payloads (the last one chunked);
#   2. the same GSM8K items with NSED in process and with every agent
#      remote: the results must be identical; wall time of both, and the
#      per-call and per-phase overhead from the federation log.
#
# With --netns (root; iproute2), it is a two-host setup on one machine: the
# agents run in network namespace nsed-agents, the orchestrator in
# nsed-orch, and each reaches nats-server in the root namespace over its own
# veth pair: every message crosses two virtual links.
#
# The measurements go to $OUT/federation/demo.json and the two runs to
# $OUT/runs/federation/{local,remote}; then `nsed report tables --only
# federation` writes $OUT/federation.md and .csv. Exits 1 if the remote run's
# results differ from the in-process run's.
#
# usage: scripts/federation-demo.sh [--netns] [--items N] [--max-tokens N] [--eval-max-tokens N] [--pings N]
#   --pings: round trips per payload size (default 1000; 2 MB: a twentieth)
# env:   OUT (results directory, default results), NSED_BIN and NSED_DATA_DIR
#        as in scripts/lib/runs.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
items=5 max_tokens=256 eval_max_tokens="" netns=0 pings=1000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --netns) netns=1 ;;
        --items) items="$2"; shift ;;
        --max-tokens) max_tokens="$2"; shift ;;
        --eval-max-tokens) eval_max_tokens="$2"; shift ;;
        --pings) pings="$2"; shift ;;
        *) echo "usage: $0 [--netns] [--items N] [--max-tokens N] [--eval-max-tokens N] [--pings N]" >&2; exit 2 ;;
    esac
    shift
done
command -v nats-server >/dev/null || PATH="$(scripts/fetch-nats.sh):$PATH"
source scripts/lib/runs.sh
work="$(mktemp -d)"
pids=()
cleanup() {
    # The agents first, then nats-server (the first pid).
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $netns == 1 ]]; then
        ip netns del nsed-agents 2>/dev/null || true
        ip netns del nsed-orch 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
agents_exec=() orch_exec=()
agents_url="nats://127.0.0.1:$port" orch_url="nats://127.0.0.1:$port"
if [[ $netns == 1 ]]; then
    # host A (agents) 10.78.0.2 <-> 10.78.0.1 root <- nats -> 10.78.1.1 <-> 10.78.1.2 host B (orchestrator)
    for n in agents:0 orch:1; do
        name="nsed-${n%%:*}" net="${n##*:}"
        ip netns del "$name" 2>/dev/null || true
        ip link del "veth-$net" 2>/dev/null || true
        ip netns add "$name"
        ip link add "veth-$net" type veth peer name "veth-$net-in"
        ip link set "veth-$net-in" netns "$name"
        ip addr add "10.78.$net.1/24" dev "veth-$net" && ip link set "veth-$net" up
        ip netns exec "$name" ip addr add "10.78.$net.2/24" dev "veth-$net-in"
        ip netns exec "$name" ip link set "veth-$net-in" up
        ip netns exec "$name" ip link set lo up
    done
    agents_exec=(ip netns exec nsed-agents) orch_exec=(ip netns exec nsed-orch)
    agents_url="nats://10.78.0.1:$port" orch_url="nats://10.78.1.1:$port"
    nats-server -a 0.0.0.0 -p "$port" >"$work/nats.log" 2>&1 &
else
    nats-server -a 127.0.0.1 -p "$port" >"$work/nats.log" 2>&1 &
fi
pids+=($!)
sleep 0.5

for spec in smollm:smollm2-135m gemma:gemma3-270m qwen05:qwen2.5-coder-0.5b; do
    "${agents_exec[@]}" "$nsed" --threads 1 agent serve --nats "$agents_url" \
        --model "${spec##*:}" --name "${spec%%:*}" >"$work/agent-${spec%%:*}.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 120); do
    n="$("${orch_exec[@]}" "$nsed" agents --nats "$orch_url" --json --wait 0.5 | grep -c '"agent"' || true)"
    [[ $n -ge 3 ]] && break
    sleep 0.5
done
[[ $n -ge 3 ]] || { echo "federation-demo: the agents did not come up" >&2; cat "$work"/agent-*.log >&2; exit 1; }

echo "federation-demo: transport" >&2
ping_lines=()
for bytes in 1024 65536 2000000; do
    n=$pings; [[ $bytes -gt 100000 ]] && n=$(( pings / 20 > 5 ? pings / 20 : 5 ))
    while IFS= read -r line; do ping_lines+=("$line"); done < <(
        "${orch_exec[@]}" "$nsed" agents --nats "$orch_url" --ping "$n" --ping-bytes "$bytes" | grep 'ping smollm')
done

runs="$OUT/runs/federation"
rm -rf "$runs/local" "$runs/remote"
common=(bench gsm8k --limit "$items" --method nsed --rounds 2 --max-tokens "$max_tokens" --seed 42)
[[ -n $eval_max_tokens ]] && common+=(--eval-max-tokens "$eval_max_tokens")
echo "federation-demo: $items GSM8K items in process" >&2
t0=$(date +%s.%N)
RAYON_NUM_THREADS=2 "$nsed" "${common[@]}" --out "$runs/local" >/dev/null
t1=$(date +%s.%N)
echo "federation-demo: the same items with every agent remote" >&2
"${orch_exec[@]}" "$nsed" "${common[@]}" --remote all --nats "$orch_url" --out "$runs/remote" >/dev/null 2>"$work/remote.err"
t2=$(date +%s.%N)
identical="$(python3 - "$runs/local/items.jsonl" "$runs/remote/items.jsonl" <<'PY'
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in ("attestation", "seconds")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
a, b = ([strip(json.loads(l)) for l in open(p)] for p in sys.argv[1:3])
print("identical" if a == b and len(a) > 0 else "DIFFERENT")
PY
)"
stats="$(grep '^federation: {"tasks"' "$work/remote.err" | sed 's/^federation: //')"
local_s="$(python3 -c "print(f'{$t1-$t0:.1f}')")" remote_s="$(python3 -c "print(f'{$t2-$t1:.1f}')")"

mkdir -p "$OUT/federation"
python3 - "$OUT/federation/demo.json" "$items" "$max_tokens" "$netns" "$local_s" "$remote_s" \
    "$identical" "${stats:-null}" "$(nats-server --version)" "${ping_lines[@]}" <<'PY'
import json, sys
path, items, max_tokens, netns, local_s, remote_s, identical, stats, nats = sys.argv[1:10]
doc = {
    "items": int(items), "max_tokens": int(max_tokens), "netns": netns == "1",
    "local_seconds": float(local_s), "remote_seconds": float(remote_s),
    "identical": identical == "identical", "pings": sys.argv[10:],
    "counters": json.loads(stats), "nats_server": nats,
}
with open(path + ".part", "w") as f:
    json.dump(doc, f, indent=1)
import os
os.replace(path + ".part", path)
PY
page federation
[[ $identical == identical ]]
