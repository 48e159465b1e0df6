#!/usr/bin/env bash
# Cross-builds segpipe for ARM64 (Debian's cross toolchain, arm64 libraries through multiarch) and runs
# its test suite under user-mode emulation (qemu-user through binfmt_misc, so the processes the tests
# start run emulated too). Then checks that the ARM64 build computes the same bits as the native x86-64
# build: every tensor `segpipe dump` writes for a few pipelines, byte for byte.
# Needs root (packages, binfmt_misc) on Debian 12 x86-64. Builds build-arm64/ (and build/ natively).
# usage: tools/arm64/cross_test.sh [CTEST ARGS...]     e.g. -L segments, -E Chromium
set -euo pipefail
cd "$(dirname "$0")/.."/..
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
# libyaml-cpp-dev is not Multi-Arch: same (its arm64 package would remove the native one): only the
# arm64 runtime library, described by cmake/arm64-shims.
pkgs=(crossbuild-essential-arm64 qemu-user-static binfmt-support libyaml-cpp0.7:arm64 libspdlog-dev:arm64
      libfmt-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cross_test: installing ${missing[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# binfmt_misc: a container may not have it mounted; qemu-user-static registers itself on install.
[ -e /proc/sys/fs/binfmt_misc/register ] || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || $SUDO update-binfmts --enable qemu-aarch64
bash tools/setup.sh >/dev/null  # the native build, for the bit-for-bit comparison
t0=$(date +%s)
cmake -S . -B build-arm64 -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchains/aarch64-linux-gnu.cmake" >/dev/null
cmake --build build-arm64 -j"$(nproc)"
file build-arm64/segpipe | grep -q "ARM aarch64" || { echo "cross_test: build-arm64/segpipe is not an ARM64 binary"; exit 1; }
t1=$(date +%s)
echo "cross_test: built for ARM64 in $((t1 - t0)) s"
status=0
ctest --test-dir build-arm64 --output-on-failure -j"$(nproc)" "$@" || status=1
t2=$(date +%s)
echo "cross_test: tests under emulation in $((t2 - t1)) s"

# The same bits on both architectures: dumps of every boundary of each pipeline, compared byte for byte.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
same=0; differ=0
for m in tiny-qwen3-moe tiny-qwen3-dense tiny-qwen3-omni tiny-qwen2-moe qwen3-moe-demo; do
  build/segpipe plan --model "$PWD/models/$m" --layer-groups 2 > "$tmp/$m.yaml"
  for arch in x86 arm64; do
    bin=build/segpipe; [ $arch = arm64 ] && bin=build-arm64/segpipe
    "$bin" dump --pipeline "$tmp/$m.yaml" --tokens "11 22 33 44 55 66 77" --max-new-tokens 4 --out "$tmp/$m-$arch" >/dev/null
  done
  while read -r f; do
    if cmp -s "$tmp/$m-x86/$f" "$tmp/$m-arm64/$f"; then same=$((same + 1)); else differ=$((differ + 1)); echo "differs: $m $f"; fi
  done < <(cd "$tmp/$m-x86" && find . -name "*.safetensors" | sort)
done
echo "cross_test: dump files identical on x86-64 and ARM64: $same, different: $differ"
[ $differ -eq 0 ] || status=1
exit $status
