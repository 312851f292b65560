#!/usr/bin/env bash
# The GPU check, one command, no network and no registry models (about 5
# minutes on one H200): for each of the four roster shapes it
#   1. writes a seeded random-weight model of that shape (`nsed models synth`),
#   2. measures prefill and decode speed on the GPU and on this machine's CPU
#      (`nsed perf`),
#   3. generates a sampled artifact on the GPU and verifies it on the CPU
#      (`nsed verify` without --device: the path that matches the artifact;
#      the published top-k distance bounds judge, the seed check and MAE are
#      measured: configs/thresholds/defaults.json), and replays it on the GPU
#      (a bit-exact pair there: the seed check decides),
#   4. repeats a GPU generation (`nsed determinism`): identical logits?
# Steps 2-4 run twice: with the weights quantized on the GPU (`cuda:0`,
# candle's quantized kernels; verified on the host path) and dequantized to
# f32 (`cuda:0/f32`; verified on `cpu-candle/f32`). The check passes when
# every f32 artifact verifies on the CPU; the quantized verdicts are
# reported as measured (on the CPU, candle's quantized kernels miss the seed
# check against the host path: docs/gpu.md).
# Everything goes to OUT/gpu-check.json (plus one log per step).
#
#   scripts/gpu-check.sh [OUT]                     # default OUT: $OUT, else /tmp/gpu-check
#   NSED_BIN=path/to/nsed                          # default: target/cuda/release/nsed
#                                                  # (an .xz, as build-cuda.sh writes, is unpacked)
#   NSED_GPU_DEVICE=cuda:1                         # default: cuda:0
#   NSED_GPU_SHAPES="smollm2-135m gemma3-270m"     # default: all four
#   NSED_GPU_QUICK=1                               # 2 layers, few tokens: a smoke run
#
# Without a GPU, NSED_GPU_DEVICE=cpu-candle runs the same steps on the GPU's
# code path on the CPU (tests/it/gpu.rs does, quick, in CI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${1:-${OUT:-/tmp/gpu-check}}
bin=${NSED_BIN:-target/cuda/release/nsed}
device=${NSED_GPU_DEVICE:-cuda:0}
shapes=${NSED_GPU_SHAPES:-smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b}
quick=${NSED_GPU_QUICK:-0}
cpu_threads=${NSED_GPU_CPU_THREADS:-$(nproc)}

say() { echo "gpu-check: $*" >&2; }
die() { say "error: $*"; exit 2; }

command -v python3 >/dev/null || die "python3 is needed to assemble the JSON"
mkdir -p "$out"
if [[ $bin == *.xz ]]; then
  [ -f "$bin" ] || die "no compressed nsed at $bin (scripts/build-cuda.sh writes target/cuda/nsed.xz)"
  unpacked=$(mktemp -d)/nsed
  xz -d -c "$bin" > "$unpacked" && chmod +x "$unpacked" || die "cannot unpack $bin"
  bin=$unpacked
fi
[ -x "$bin" ] || die "no nsed binary at $bin (build it with scripts/build-cuda.sh, or set NSED_BIN)"
t_start=$SECONDS

# The CUDA 13 libraries the binary links: a CUDA install, or the nvidia-*
# wheels of a Python environment (PyTorch brings them).
if [[ $device == cuda* ]]; then
  dirs=$(python3 - <<'EOF'
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
seen = []
for r in roots:
    for d in glob.glob(os.path.join(r, "nvidia", "*", "lib")) + glob.glob(os.path.join(r, "nvidia", "*", "*", "lib")):
        if os.path.isdir(d) and d not in seen:
            seen.append(d)
for d in ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]:
    if os.path.isdir(d):
        seen.append(d)
print(":".join(seen))
EOF
)
  export LD_LIBRARY_PATH=${dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  missing=$(ldd "$bin" | awk '/not found/ {print $1}' | tr '\n' ' ')
  [ -z "$missing" ] || die "the loader cannot find: $missing(install CUDA 13, or pip install nvidia-cublas nvidia-curand nvidia-cuda-nvrtc nvidia-cuda-runtime)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/nvidia-smi.txt" 2>&1 || true
fi

if [ "$quick" = 1 ]; then
  layers=(--layers 2); prompt_tokens=32; gen_tokens=16; repeats=1; det_runs=2; art_tokens=24
else
  layers=(); prompt_tokens=512; gen_tokens=128; repeats=3; det_runs=5; art_tokens=96
fi
prompt="Write a short story about a lighthouse keeper who finds a message in a bottle."

run() { # name, then the command: stdout to OUT/name.json, stderr to OUT/name.log
  local name=$1; shift
  local t0=$SECONDS rc=0
  "$@" > "$out/$name.json" 2> "$out/$name.log" || rc=$?
  echo "$rc $(( SECONDS - t0 ))" > "$out/$name.rc"
  say "$name: exit $rc ($(( SECONDS - t0 )) s)"
}

for shape in $shapes; do
  model=$out/$shape.gguf
  run "$shape.synth" "$bin" models synth --like "$shape" "${layers[@]}" -o "$model"
  [ -s "$model" ] || die "$shape: the synthetic model was not written (see $out/$shape.synth.log)"
  run "$shape.perf-cpu" "$bin" --device cpu --threads "$cpu_threads" perf -m "$model" \
    --prompt-tokens $prompt_tokens --gen-tokens $gen_tokens --repeats 1 --json
  for mode in quantized f32; do
    on=$device; [ "$mode" = f32 ] && on=$device/f32
    tag=$shape.$mode
    run "$tag.perf-gpu" "$bin" --device "$on" perf -m "$model" \
      --prompt-tokens $prompt_tokens --gen-tokens $gen_tokens --repeats $repeats --json
    run "$tag.generate" "$bin" --device "$on" generate -m "$model" -p "$prompt" \
      --temperature 0.8 --seed 7 --inference-id gpu-check -n $art_tokens --top-logprobs 5 \
      --json --artifact "$out/$tag.artifact.json"
    # No --device: verify picks the CPU path that matches the artifact. A
    # random-weight model has no calibration for the GPU -> CPU pair, so the
    # published distance bounds judge (the seed check and MAE are reported).
    run "$tag.verify-cpu" "$bin" --threads "$cpu_threads" verify \
      --artifact "$out/$tag.artifact.json" -m "$model" \
      --thresholds configs/thresholds/defaults.json --json
    run "$tag.replay-gpu" "$bin" --device "$on" verify \
      --artifact "$out/$tag.artifact.json" -m "$model" --replay --json
    run "$tag.determinism" "$bin" --device "$on" --threads 1 determinism -m "$model" \
      --runs $det_runs -n $art_tokens --hashes-only --json
  done
  rm -f "$model"
done

python3 - "$out" "$device" "$bin" "$(( SECONDS - t_start ))" "$quick" $shapes <<'EOF'
import json, os, subprocess, sys
out, device, binary, seconds, quick, shapes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6:]

def load(name):
    path = os.path.join(out, name + ".json")
    rc_path = os.path.join(out, name + ".rc")
    rc, secs = (open(rc_path).read().split() + ["?", "?"])[:2] if os.path.exists(rc_path) else ("?", "?")
    doc = None
    try:
        text = open(path).read().strip()
        doc = json.loads(text) if text else None
    except (OSError, ValueError):
        pass
    if doc is None:
        tail = open(os.path.join(out, name + ".log"), errors="replace").read()[-400:] if os.path.exists(os.path.join(out, name + ".log")) else ""
        doc = {"error": tail}
    return {"exit": int(rc) if rc.lstrip("-").isdigit() else rc, "seconds": int(secs) if secs.isdigit() else secs, "result": doc}

def slim_verify(v):
    r = v["result"]
    if not isinstance(r, dict) or "metrics" not in r:
        return v
    metrics = {m["name"]: {"value": m["value"], "threshold": m.get("threshold"), "verdict": m["verdict"]} for m in r["metrics"]}
    seed = r.get("seed") or {}
    return {"exit": v["exit"], "seconds": v["seconds"], "verdict": r.get("verdict"), "positions": r.get("positions"),
            "precheck": r.get("precheck"), "metrics": metrics,
            "seed": {k: seed.get(k) for k in ("positions", "mismatches", "first_mismatch", "tolerance", "verdict")},
            "replay": r.get("replay"), "executor": r.get("executor"), "validator": r.get("validator"),
            "policy": r.get("policy")}

def speed(p):
    r = p["result"]
    keep = ("device", "kernel", "threads", "prompt_tokens", "gen_tokens", "repeats", "prefill_tok_per_s", "decode_tok_per_s", "peak_rss_mib")
    return {"exit": p["exit"], **({k: r.get(k) for k in keep} if isinstance(r, dict) and "prefill_tok_per_s" in r else {"error": r})}

def mode(s, m, cpu):
    gpu = speed(load(f"{s}.{m}.perf-gpu"))
    ratio = lambda k: (gpu[k] / cpu[k]) if isinstance(gpu.get(k), (int, float)) and cpu.get(k) else None
    det = load(f"{s}.{m}.determinism")
    runs = det["result"].get("runs", []) if isinstance(det["result"], dict) else []
    return {
        "perf_gpu": gpu,
        "speedup_over_cpu": {"prefill": ratio("prefill_tok_per_s"), "decode": ratio("decode_tok_per_s")},
        "verify_on_cpu": slim_verify(load(f"{s}.{m}.verify-cpu")),
        "replay_on_gpu": slim_verify(load(f"{s}.{m}.replay-gpu")),
        "determinism_on_gpu": {"exit": det["exit"], "runs": [{k: r.get(k) for k in ("runs", "tokens", "identical_output_share", "identical_logits_share", "output_sha256", "logits_sha256")} for r in runs]},
    }

models = {}
for s in shapes:
    cpu = speed(load(s + ".perf-cpu"))
    models[s] = {
        "synth": {"exit": load(s + ".synth")["exit"], "log": open(os.path.join(out, s + ".synth.log")).read().strip()[-300:] if os.path.exists(os.path.join(out, s + ".synth.log")) else ""},
        "perf_cpu": cpu,
        "quantized": mode(s, "quantized", cpu),
        "f32": mode(s, "f32", cpu),
    }

def ok(m, w):
    return m[w]["verify_on_cpu"].get("exit") == 0 and m[w]["perf_gpu"].get("exit") == 0
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
smi = open(os.path.join(out, "nvidia-smi.txt")).read().strip() if os.path.exists(os.path.join(out, "nvidia-smi.txt")) else None
version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
doc = {"schema": "nsed.gpu-check/v1", "device": device, "gpu": smi, "nsed": version, "commit": commit,
       "quick": quick == "1", "seconds": seconds,
       "all_verified_on_cpu": all(ok(m, "f32") for m in models.values()),
       "quantized_verified_on_cpu": all(ok(m, "quantized") for m in models.values()),
       "models": models}
with open(os.path.join(out, "gpu-check.json"), "w") as f:
    json.dump(doc, f, indent=1)
for s, m in models.items():
    c = m["perf_cpu"]
    print(f"{s}: cpu prefill {c.get('prefill_tok_per_s')} / decode {c.get('decode_tok_per_s')} tok/s")
    for w in ("quantized", "f32"):
        g, v = m[w]["perf_gpu"], m[w]["verify_on_cpu"]
        d = v.get("metrics", {}).get("gonka_distance2", {}).get("value")
        print(f"  {w}: {g.get('device')} prefill {g.get('prefill_tok_per_s')} / decode {g.get('decode_tok_per_s')} tok/s; "
              f"verified on cpu: {v.get('verdict')} (exit {v.get('exit')}, gonka_distance2 {d}, "
              f"seed mismatches {v.get('seed', {}).get('mismatches')}/{v.get('seed', {}).get('positions')})")
print("wrote", os.path.join(out, "gpu-check.json"))
sys.exit(0 if doc["all_verified_on_cpu"] else 1)
EOF
