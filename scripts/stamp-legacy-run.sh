#!/usr/bin/env bash
# Give a bench run made before build stamps a stamp, so that the current
# build (and any build with the same stamp) may resume it — but only if the
# current build provably writes the same records. The evidence is a replay:
# one finished item of the run (by default the cheapest, by recorded model
# seconds) is run again with the current build, from the run's own command
# line, into a scratch directory; its record must equal the recorded one in
# everything but timings and the build tag, and the replay's fingerprint must
# equal the run's in everything but the selection, the build and the stamp.
# Then the replay's stamp (measured by the current build) is written into the
# run's meta.json, with a note naming the replayed item, the build and the
# date. Otherwise nothing is written and the differences are printed.
#
# Usage: scripts/stamp-legacy-run.sh RUN_DIR [ITEM]
#   NSED_BIN (default target/release/nsed, built if missing), THREADS
#   (default 2), NSED_DATA_DIR as for the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
run=${1:?usage: scripts/stamp-legacy-run.sh RUN_DIR [ITEM]}
item=${2:-}
nsed=${NSED_BIN:-target/release/nsed}
[ -x "$nsed" ] || cargo build --release
[ -f "$run/meta.json" ] || { echo "stamp-legacy-run: $run/meta.json not found" >&2; exit 2; }

if python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["fingerprint"].get("stamp") else 1)' "$run/meta.json"; then
  echo "stamp-legacy-run: $run already has a stamp" >&2
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The item, and the run's own bench arguments with --out, --resume and the
# selection replaced by the one item.
mapfile -t plan < <(python3 - "$run" "$item" <<'EOF'
import json, sys
run, item = sys.argv[1], sys.argv[2]
meta = json.load(open(f"{run}/meta.json"))
records = [json.loads(l) for l in open(f"{run}/items.jsonl") if l.strip()]
if not records:
    sys.exit("stamp-legacy-run: the run has no finished item to replay")
def cost(r):
    return sum(m["usage"]["seconds"] for m in r["results"].values())
if not item:
    item = min(records, key=cost)["item"]
elif item not in {r["item"] for r in records}:
    sys.exit(f"stamp-legacy-run: {item} is not a finished item of {run}")
cmd = meta["runs"][0]["command"]
args = cmd[cmd.index("bench") + 1:]
drop_with_value = {"--out", "--limit", "--offset", "--ids", "--parallel"}
kept, skip = [], False
for a in args:
    if skip:
        skip = False
        continue
    if a in drop_with_value:
        skip = True
        continue
    if a in ("--resume", "--integer-only"):
        continue
    kept.append(a)
print(item)
for a in kept:
    print(a)
EOF
)
item=${plan[0]}
args=("${plan[@]:1}")
echo "stamp-legacy-run: replaying $item of $run with $nsed (tree at $(git rev-parse --short=12 HEAD))" >&2
"$nsed" --threads "${THREADS:-2}" bench "${args[@]}" --ids "$item" --out "$scratch/replay" >&2

python3 - "$run" "$scratch/replay" "$item" <<'EOF'
import datetime, json, os, sys
run, replay, item = sys.argv[1:]
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if not k.endswith("seconds") and k != "build"}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
recorded = next(json.loads(l) for l in open(f"{run}/items.jsonl") if l.strip() and json.loads(l)["item"] == item)
replayed = json.loads(open(f"{replay}/items.jsonl").read().strip())
old_meta = json.load(open(f"{run}/meta.json"))
new_meta = json.load(open(f"{replay}/meta.json"))
def protocol(fp):
    return {k: v for k, v in fp.items() if k not in ("selection", "version", "stamp")}
problems = []
if protocol(old_meta["fingerprint"]) != protocol(new_meta["fingerprint"]):
    keys = [k for k in protocol(new_meta["fingerprint"]) if old_meta["fingerprint"].get(k) != new_meta["fingerprint"].get(k)]
    problems.append(f"the replay's settings differ from the run's: {', '.join(keys)}")
if strip(recorded) != strip(replayed):
    a, b = json.dumps(strip(recorded), sort_keys=True), json.dumps(strip(replayed), sort_keys=True)
    at = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    problems.append(f"the replayed record of {item} differs from the recorded one at …{a[max(0, at - 80):at + 80]}… vs …{b[max(0, at - 80):at + 80]}…")
if problems:
    print("stamp-legacy-run: not stamped: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
stamp = new_meta["fingerprint"]["stamp"]
commit = new_meta["runs"][0]["commit"]
head = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
made_by = old_meta["fingerprint"].get("version") or {}
stamp["note"] = (
    f"added {datetime.date.today().isoformat()} by scripts/stamp-legacy-run.sh: item {item}, made by "
    f"commit {str(made_by.get('commit', '?'))[:12]} ({made_by.get('kernel', '?')}), replayed by commit {head} "
    f"({new_meta['runs'][0]['kernel']}) with an identical record (timings aside); numerics and protocol measured by {head}"
)
old_meta["fingerprint"]["stamp"] = stamp
tmp = f"{run}/meta.json.partial"
with open(tmp, "w") as f:
    json.dump(old_meta, f, indent=2, ensure_ascii=False)
    f.write("\n")
os.replace(tmp, f"{run}/meta.json")
print(f"stamp-legacy-run: {run} stamped ({stamp['note']})", file=sys.stderr)
EOF
