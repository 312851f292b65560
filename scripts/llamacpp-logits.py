#!/usr/bin/env python3
"""Reference logits from llama.cpp for nsed's synthetic models of the
architectures it learned from the NSED paper's families (and, side by side,
of the roster's), written as small goldens so that CI compares nsed with
llama.cpp without building llama.cpp.

For each shape: `nsed models synth --like ID --scaled-down` writes the model
(an id `SHAPE:QUANT` adds `--quant QUANT`, the layers' weight type, and is
stored as SHAPE-quant.json)
(same bytes every time: the test regenerates it and checks its sha256),
llama.cpp (the llama-cpp-python package, built from its source package on
the Python registry) evaluates a fixed token sequence in one batch with the
logits of every position kept, and the logits are stored as little-endian
f32, base64, in tests/data/golden/logits/ID.json.

usage: scripts/llamacpp-logits.py NSED_BINARY [ID ...]
needs: pip install --user llama-cpp-python==0.3.36 (compiles llama.cpp, ~15 min)
"""
import base64
import hashlib
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile

import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "golden", "logits")
SHAPES = ["qwen3-0.6b", "qwen3-8b", "gemma3-1b", "gemma3-12b", "gemma3-27b",
          "qwen2.5-coder-0.5b", "gemma3-270m", "smollm2-135m",
          "qwen3-30b-a3b", "llama3.1-8b", "gpt-oss-20b", "mistral-nemo-12b",
          "qwen3-8b:Q2_K", "qwen3-8b:Q3_K", "qwen3-8b:Q5_K", "qwen3-8b:IQ4_NL",
          "qwen3-8b:IQ4_XS", "qwen3-8b:F16", "qwen3-30b-a3b:IQ4_XS"]
# 16 positions: past the scaled-down sliding window (8), so that both the
# windowed and the global layers' masks are exercised.
TOKENS = [2, 17, 301, 42, 999, 5, 77, 640, 12, 512, 3, 250, 808, 64, 128, 1000]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    nsed, ids = sys.argv[1], sys.argv[2:] or SHAPES
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for shape in ids:
            like, _, quant = shape.partition(":")
            name = like + ("-" + quant.lower() if quant else "")
            path = os.path.join(tmp, name + ".gguf")
            synth = ["models", "synth", "--like", like, "--scaled-down"]
            synth += ["--quant", quant] if quant else []
            subprocess.run([nsed] + synth + ["-o", path], check=True, stdout=subprocess.DEVNULL)
            with open(path, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            llm = llama_cpp.Llama(model_path=path, n_ctx=64, n_batch=64, n_ubatch=64, n_threads=2,
                                  logits_all=True, verbose=False, seed=0)
            llm.eval(TOKENS)
            rows = llm.scores[: len(TOKENS)]
            n_vocab = llm.n_vocab()
            flat = [float(x) for row in rows for x in row[:n_vocab]]
            blob = base64.b64encode(struct.pack("<%df" % len(flat), *flat)).decode()
            golden = {
                "shape": name,
                "synth": "nsed " + " ".join(synth),
                "sha256": sha,
                "tokens": TOKENS,
                "n_vocab": n_vocab,
                "logits_f32_le_base64": blob,
                "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, "
                             "one batch of 16, logits_all, 2 threads",
                "cpu": cpu_name(),
                "system_info": llama_cpp.llama_print_system_info().decode().strip(),
            }
            with open(os.path.join(OUT, name + ".json"), "w") as f:
                json.dump(golden, f, indent=1)
                f.write("\n")
            print(f"{shape}: {len(TOKENS)} positions x {n_vocab} logits, sha256 {sha[:12]}")
            del llm


if __name__ == "__main__":
    main()
