#!/usr/bin/env bash
# Build nsed for NVIDIA GPUs (`--features cuda`, then `nsed --device cuda ...`)
# on any x86-64 Linux machine, with or without a GPU.
#
#   scripts/build-cuda.sh                      # kernels for sm_80, sm_89 and sm_90
#   NSED_CUDA_ARCHS=90 scripts/build-cuda.sh   # one architecture (H100/H200): faster
#
# 1. Assembles a CUDA 13.0 toolkit from NVIDIA's wheels on the Python package
#    registry (nvcc, cicc, headers, cudart, cuBLAS, cuRAND, NVRTC), pinned and
#    sha256-checked, into $NSED_CUDA_HOME (default ~/.cache/nsed/cuda-13.0),
#    outside git. 13.0 because a driver JIT-compiles PTX only from a toolkit
#    no newer than itself: 13.0 PTX loads on every CUDA 13 driver (R580+).
# 2. Links without a driver: candle's CUDA backend links libcuda.so, which
#    only the driver installs, so a stub with every driver symbol (each
#    returns CUDA_ERROR_STUB_LIBRARY) is generated for the link, as the CUDA
#    toolkit's own lib/stubs/libcuda.so does; at run time the loader finds
#    the real libcuda.so.1 of the installed driver.
# 3. Builds into target/cuda (the CPU build in target/ is untouched), for
#    each architecture in NSED_CUDA_ARCHS: candle's PTX kernels are compiled
#    for the lowest (the driver JIT-compiles them for newer GPUs), and its
#    statically linked quantized kernels (mmvq/mmq) get machine code for every
#    one, through an nvcc wrapper that adds the other -gencode flags.
#
# The binary needs at run time: the driver's libcuda.so.1, and CUDA 13's
# libcudart.so.13, libcublas(Lt).so.13, libcurand.so.10 and libnvrtc.so.13
# (from a CUDA 13 install, or the nvidia-* wheels PyTorch brings; the
# toolkit's lib folder here has them too). `scripts/gpu-check.sh` finds them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

home=${NSED_CUDA_HOME:-$HOME/.cache/nsed/cuda-13.0}
archs=${NSED_CUDA_ARCHS:-80 89 90}
target_dir=${NSED_CUDA_TARGET_DIR:-target/cuda}

# name==version sha256 (of the manylinux x86-64 wheel).
wheels=(
  "nvidia-cuda-nvcc==13.0.88 56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"
  "nvidia-nvvm==13.0.88 c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"
  "nvidia-cuda-crt==13.0.88 2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"
  "nvidia-cuda-runtime==13.0.96 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
  "nvidia-cuda-cccl==13.0.85 e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"
  "nvidia-cuda-nvrtc==13.0.88 ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575"
  "nvidia-curand==10.4.0.35 1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc"
  "nvidia-cublas==13.0.2.14 0cf238ffdbe46c00cb9aa98e7bca745c223a5ca5a53e686ac8b3e5a08fe80d6c"
)

say() { echo "build-cuda: $*" >&2; }
die() { say "error: $*"; exit 2; }

[ "$(uname -m)" = x86_64 ] || die "the CUDA wheels used here are for x86-64 Linux; this is $(uname -m)"
command -v python3 >/dev/null || die "python3 with pip is needed to fetch the CUDA wheels"
command -v gcc >/dev/null || die "gcc is needed (nvcc's host compiler, and the driver stub)"
for a in $archs; do
  case $a in 80|86|87|89|90|100|120) ;; *) die "NSED_CUDA_ARCHS: unknown architecture '$a' (e.g. 80 89 90)";; esac
done

root=$home/nvidia/cu13
fetch_toolkit() {
  local dl=$home/wheels
  mkdir -p "$dl"
  local specs=()
  for w in "${wheels[@]}"; do specs+=("${w%% *}"); done
  say "fetching ${#specs[@]} CUDA 13.0 wheels (~450 MB) into $dl"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
    --python-version 3.11 -d "$dl" "${specs[@]}"
  for w in "${wheels[@]}"; do
    local spec=${w%% *} sum=${w##* }
    local name=${spec%%==*} version=${spec##*==}
    local file
    file=$(ls "$dl"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -1)
    [ -n "$file" ] || die "wheel $spec was not downloaded"
    echo "$sum  $file" | sha256sum --check --quiet - || die "sha256 mismatch: $file"
    python3 -m zipfile -e "$file" "$home"
  done
}
if [ ! -x "$root/bin/nvcc" ] || [ ! -x "$root/nvvm/bin/cicc" ]; then
  fetch_toolkit
fi
chmod +x "$root"/bin/* "$root"/nvvm/bin/* 2>/dev/null || true
"$root/bin/nvcc" --version | grep -q "release 13.0" || die "$root/bin/nvcc is not CUDA 13.0"

# Unversioned names for the linker (the wheels ship only the versioned ones).
for lib in cudart cublas cublasLt curand nvrtc; do
  so=$(cd "$root/lib" && ls "lib$lib.so."* 2>/dev/null | sort | head -1) || true
  [ -n "$so" ] || die "lib$lib.so.* is missing from $root/lib"
  ln -sfn "$so" "$root/lib/lib$lib.so"
done

# The driver stub, from the driver API that cudarc binds.
cargo fetch --quiet
sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | sort -V | tail -1)
[ -n "$sys" ] || die "cudarc's sources are not in the cargo registry (cargo fetch failed?)"
mkdir -p "$root/lib/stubs"
stub_c=$root/lib/stubs/libcuda_stub.c
{
  echo "/* Link-time stand-in for the NVIDIA driver's libcuda.so.1 (generated by"
  echo "   nsed's scripts/build-cuda.sh from $sys); never loaded at run time. */"
  grep -oE "pub (unsafe )?fn cu[A-Za-z0-9_]+" "$sys" | awk "{print \$NF}" | sort -u |
    awk '{print "int " $1 "(void) { return 34; }"}'
} > "$stub_c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$stub_c"

# Several architectures: the wrapper gives every non-PTX compile the others.
lowest=$(printf '%s\n' $archs | sort -n | head -1)
bin=$home/bin-wrap
mkdir -p "$bin"
extra=""
for a in $archs; do
  [ "$a" = "$lowest" ] || extra="$extra -gencode=arch=compute_$a,code=sm_$a"
done
cat > "$bin/nvcc" <<EOF
#!/usr/bin/env bash
# nsed's build-cuda.sh: add machine code for more architectures, except to
# PTX compiles (nvcc allows one architecture there).
for a in "\$@"; do
  case \$a in --ptx|-ptx) exec "$root/bin/nvcc" "\$@";; esac
done
exec "$root/bin/nvcc" "\$@"$extra
EOF
chmod +x "$bin/nvcc"

export CUDA_ROOT=$root CUDA_PATH=$root CUDA_TOOLKIT_ROOT_DIR=$root
export PATH=$bin:$root/bin:$PATH
export CUDA_COMPUTE_CAP=$lowest
export LIBRARY_PATH=$root/lib:$root/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
# The binary travels to GPU machines: no symbols (a third of the size).
export CARGO_PROFILE_RELEASE_STRIP=symbols
say "building --features cuda for sm_$(echo $archs | sed 's/ /, sm_/g') into $target_dir (CUDA_ROOT=$root)"
t0=$SECONDS
cargo build --release --features cuda --target-dir "$target_dir" "$@"
out=$target_dir/release/nsed
say "built $out ($(du -h "$out" | cut -f1), $(( SECONDS - t0 )) s)"
# A compressed copy for machines that take few files (a lent GPU machine
# takes 64 MiB with the checkout): scripts/gpu-check.sh unpacks it.
if command -v xz >/dev/null; then
  xz -T0 -6 -c "$out" > "$target_dir/nsed.xz"
  say "compressed: $target_dir/nsed.xz ($(du -h "$target_dir/nsed.xz" | cut -f1)); NSED_BIN=$target_dir/nsed.xz scripts/gpu-check.sh"
fi
say "run it through scripts/nsed-cuda (finds the CUDA 13 libraries, names a missing driver), e.g.:"
say "  scripts/nsed-cuda --device cuda perf --model MODEL"
