#!/usr/bin/env bash
# What the sandbox costs per program: one `print('ok')` run through
# `nsed sandbox run --jobs 1` in each layer — root namespaces (as root), user
# namespaces and the Landlock + seccomp floor (as an ordinary user: uid 65534
# through setpriv when this runs as root), rlimits only (best-effort, no
# layer) — beside the bare interpreter (`python3 -I -B ok.py`, no nsed).
#
# Per round and mode: the wall time of N+1 programs minus that of 1, over N,
# so nsed's start and the probe cancel out. Rounds interleave the modes; the
# table gives the median and the range over rounds. Writes $OUT/cost.csv
# and $OUT/cost.md (commit, CPU, kernel, binary named in both).
#
# Usage: scripts/sandbox-cost.sh [OUT]   (default results/sandbox)
#   ROUNDS (default 5), RUNS (N, default 40), NSED_BIN (default
#   target/release/nsed, built if missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/sandbox}
rounds=${ROUNDS:-5}
runs=${RUNS:-40}
nsed=${NSED_BIN:-target/release/nsed}
[ -x "$nsed" ] || cargo build --release
mkdir -p "$out"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cp "$nsed" "$work/nsed"
echo "print('ok')" > "$work/ok.py"
chmod 644 "$work/ok.py"
files=()
for _ in $(seq "$runs"); do files+=("$work/ok.py"); done

as_user=()
if [ "$(id -u)" = 0 ]; then
  as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  modes=(root-namespaces user-namespaces landlock-seccomp none python)
else
  modes=(user-namespaces landlock-seccomp none python)
fi

now_ms() { date +%s%3N; }

# nsed_wall MODE FILE...: milliseconds for one `nsed sandbox run`.
nsed_wall() {
  local mode=$1; shift
  local cmd=("$work/nsed" sandbox run --jobs 1)
  case $mode in
    root-namespaces) ;;
    user-namespaces) cmd=("${as_user[@]}" "${cmd[@]}") ;;
    landlock-seccomp) cmd=("${as_user[@]}" "${cmd[@]}" --sandbox-layer landlock) ;;
    none) cmd=("${as_user[@]}" "${cmd[@]}" --sandbox best-effort --sandbox-layer none) ;;
  esac
  local t0; t0=$(now_ms)
  (cd "$work" && "${cmd[@]}" "$@" >/dev/null 2>"$work/err") || {
    echo "sandbox-cost: $mode failed: $(tail -1 "$work/err")" >&2; exit 1; }
  echo $(( $(now_ms) - t0 ))
}

python_wall() {
  local t0; t0=$(now_ms)
  for _ in $(seq "$1"); do (cd "$work" && /usr/bin/python3 -I -B ok.py >/dev/null); done
  echo $(( $(now_ms) - t0 ))
}

echo "round,mode,runs,per_run_ms" > "$out/cost.csv"
for round in $(seq "$rounds"); do
  for mode in "${modes[@]}"; do
    if [ "$mode" = python ]; then
      one=$(python_wall 1); many=$(python_wall $((runs + 1)))
    else
      one=$(nsed_wall "$mode" "$work/ok.py"); many=$(nsed_wall "$mode" "$work/ok.py" "${files[@]}")
    fi
    per=$(python3 -c "print(f'{($many - $one) / $runs:.2f}')")
    echo "$round,$mode,$runs,$per" >> "$out/cost.csv"
    echo "round $round $mode: $per ms per program" >&2
  done
done

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo -dirty)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
python3 - "$out" "$commit" "$cpu" "$(uname -r)" "$nsed" "$rounds" "$runs" <<'EOF'
import csv, statistics, sys
out, commit, cpu, kernel, binary, rounds, runs = sys.argv[1:]
rows = list(csv.DictReader(open(f"{out}/cost.csv")))
names = {
    "root-namespaces": "root namespaces (as root)",
    "user-namespaces": "user namespaces (uid 65534)",
    "landlock-seccomp": "Landlock + seccomp (uid 65534)",
    "none": "rlimits only, best-effort (uid 65534)",
    "python": "bare `python3 -I -B` (no nsed)",
}
lines = [
    "# Sandbox cost per program",
    "",
    f"One `print('ok')` through `nsed sandbox run --jobs 1`: (wall of {int(runs) + 1} programs − wall of 1) / {runs}, "
    f"median and range over {rounds} interleaved rounds. Commit {commit}, {cpu}, Linux {kernel}, binary `{binary}`. "
    "Made by `scripts/sandbox-cost.sh`.",
    "",
    "| layer | ms per program, median | range | over bare python |",
    "|---|---|---|---|",
]
base = statistics.median(float(r["per_run_ms"]) for r in rows if r["mode"] == "python")
for mode, name in names.items():
    v = [float(r["per_run_ms"]) for r in rows if r["mode"] == mode]
    if not v:
        continue
    m = statistics.median(v)
    lines.append(f"| {name} | {m:.1f} | {min(v):.1f}–{max(v):.1f} | {m - base:+.1f} |")
open(f"{out}/cost.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
