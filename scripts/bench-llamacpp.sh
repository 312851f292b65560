#!/usr/bin/env bash
# Build one of llama.cpp's benchmark tools (default `llama-bench`; also
# `llama-batched-bench`, the anchor of `nsed perf --batch`) once, from the llama.cpp tree vendored in the
# llama-cpp-python source package, into a cache directory outside git, and
# print its path. The only network access is the Python package registry:
#   pip download --no-binary llama-cpp-python --no-deps llama-cpp-python
# cmake comes from the registry too (pip install --user cmake) when missing.
#
# usage: scripts/bench-llamacpp.sh            build if needed, print the binary path
#        LLAMACPP_TOOL=llama-batched-bench scripts/bench-llamacpp.sh   the
#            aggregate-throughput tool (B sequences per pass), same build tree
#        LLAMACPP_VERSION=0.3.20 scripts/bench-llamacpp.sh   pin another sdist
#        LLAMACPP_ISA=avx2 scripts/bench-llamacpp.sh   a build without AVX-512
#            (GGML_NATIVE=OFF, AVX2+FMA+F16C), to compare like for like with
#            nsed's NSED_KERNEL=avx2 on a machine that has AVX-512
#        LLAMACPP_ISA=avxvnni scripts/bench-llamacpp.sh   AVX2 plus the 256-bit
#            AVX-VNNI dot products (Intel Alder Lake+, AMD Zen 5), no AVX-512:
#            the like-for-like build for NSED_KERNEL=avxvnni
# env:   NSED_LLAMACPP_DIR (default ~/.cache/nsed/llama.cpp), JOBS (default nproc)
set -euo pipefail

version="${LLAMACPP_VERSION:-0.3.36}"
tool="${LLAMACPP_TOOL:-llama-bench}"
case "$tool" in
    llama-bench|llama-batched-bench) ;;
    *) echo "bench-llamacpp: LLAMACPP_TOOL must be llama-bench or llama-batched-bench, not '$tool'" >&2; exit 2 ;;
esac
isa="${LLAMACPP_ISA:-native}"
case "$isa" in
    native) isa_flags=(-DGGML_NATIVE=ON) ;;
    avx2) isa_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
                     -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF) ;;
    avxvnni) isa_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
                        -DGGML_AVX512=OFF -DGGML_AVX_VNNI=ON) ;;
    *) echo "bench-llamacpp: LLAMACPP_ISA must be native, avx2 or avxvnni, not '$isa'" >&2; exit 2 ;;
esac
# On CPUs with AMX (Sapphire Rapids and later), -march=native compiles ggml's
# AMX matmul, whose tile instructions fault (SIGILL) unless the kernel has
# granted the process AMX state, as on this VM. nsed uses AVX-512 VNNI, not
# AMX, so AMX is left out and both programs use the same instruction set.
flavor="" cflags=""
[[ $isa == native ]] || flavor="-$isa"
if [[ $isa == native ]] && grep -q -w amx_tile /proc/cpuinfo 2>/dev/null; then
    flavor="-noamx" cflags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
cache="${NSED_LLAMACPP_DIR:-$HOME/.cache/nsed/llama.cpp}/$version$flavor"
bin="$cache/build/bin/$tool"
jobs="${JOBS:-$(nproc)}"

if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$cache"
log() { echo "bench-llamacpp: $*" >&2; }

export PATH="$HOME/.local/bin:$PATH"
if ! command -v cmake >/dev/null; then
    log "cmake missing: installing it from the package registry (pip --user)"
    python3 -m pip install -q --user --disable-pip-version-check cmake >&2
    command -v cmake >/dev/null || { log "cmake still not on PATH"; exit 2; }
fi

src="$cache/src"
if [[ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]]; then
    log "downloading the llama-cpp-python $version source package"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download -q --disable-pip-version-check --no-binary llama-cpp-python \
        --no-deps -d "$tmp" "llama-cpp-python==$version" >&2
    sdist=("$tmp"/llama_cpp_python-*.tar.gz)
    [[ -f "${sdist[0]}" ]] || { log "no sdist downloaded"; exit 2; }
    sha256sum "${sdist[0]}" | tee "$cache/sdist.sha256" >&2
    rm -rf "$src" && mkdir -p "$src"
    tar -xzf "${sdist[0]}" -C "$src" --strip-components=1
fi

# Native (or AVX2-only) CPU build, OpenMP off so that -t 2 means two threads and nothing else;
# only the requested tool's target.
log "building $tool with $jobs jobs (a few minutes)"
cmake -S "$src/vendor/llama.cpp" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release \
    "${isa_flags[@]}" -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_CXX_FLAGS="$cflags" \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_TOOLS=ON >"$cache/cmake.log" 2>&1 || { tail -30 "$cache/cmake.log" >&2; exit 2; }
cmake --build "$cache/build" --target "$tool" -j "$jobs" >"$cache/build.log" 2>&1 \
    || { tail -30 "$cache/build.log" >&2; exit 2; }
[[ -x "$bin" ]] || { log "build finished but $bin is missing"; exit 2; }
echo "$bin"
