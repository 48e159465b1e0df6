#!/bin/sh
# `cmake --install` into a fresh prefix gives a working command: <prefix>/bin/segpipe --help exits 0,
# and the built-in demo is looked up under <prefix>/share/segpipe (it runs where the demo model is
# installed; otherwise its message names the installed location, not the source tree).
# usage: install_prefix.sh BUILD_DIR CMAKE_COMMAND
set -u
build=$1 cmake=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/segpipe-install-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
p=$tmp/prefix
"$cmake" --install "$build" --prefix "$p" >"$tmp/install.log" 2>&1 || { echo "FAIL: cmake --install"; cat "$tmp/install.log"; exit 1; }
status=0
"$p/bin/segpipe" --help >"$tmp/help.log" 2>&1 || { echo "FAIL: $p/bin/segpipe --help"; cat "$tmp/help.log"; status=1; }
grep -q "generate" "$tmp/help.log" || { echo "FAIL: --help does not list the commands"; status=1; }
[ -f "$p/share/segpipe/pipelines/demo.yaml" ] || { echo "FAIL: demo pipeline not installed"; status=1; }
# Run from elsewhere, so nothing is found relative to the working directory.
cd "$tmp" || exit 1
"$p/bin/segpipe" generate --tokens "1 2 3" --max-new-tokens 1 --ids >"$tmp/demo.out" 2>"$tmp/demo.err"
rc=$?
if [ -f "$p/share/segpipe/models/qwen3-moe-demo/config.json" ]; then
  [ "$rc" -eq 0 ] || { echo "FAIL: installed demo rc=$rc"; cat "$tmp/demo.err"; status=1; }
else
  # Without the demo model in this source tree: exit 2 naming the installed model path.
  { [ "$rc" -eq 2 ] && grep -q "$p/share/segpipe" "$tmp/demo.err"; } ||
    { echo "FAIL: installed demo without its model: rc=$rc"; cat "$tmp/demo.err"; status=1; }
fi
[ "$status" -eq 0 ] && echo "cmake --install: $p/bin/segpipe works"
exit "$status"
