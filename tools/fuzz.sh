#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz) for SECONDS each (default 60) from a corpus seeded with
# the committed files (make_fuzz_seeds: checkpoints' headers and indexes, configs, goldens, segpipe
# dump files, tokenizer.json, chat messages, worker specs). New inputs are kept in
# build-fuzz/fuzz-corpus/NAME between runs; a crash stops that target and leaves its input in
# build-fuzz/fuzz-artifacts/NAME/. Exit 1 when any target found a crash.
# Needs clang with libFuzzer (tools/setup.sh installs it); builds build-fuzz/ first.
# usage: tools/fuzz.sh [SECONDS] [TARGET...]   (targets: safetensors_header model_config golden
#        shard_index dump_file tokenizer_json chat_messages worker_spec; default all)
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
all="safetensors_header model_config golden shard_index dump_file tokenizer_json chat_messages worker_spec"
targets=${*:-$all}
B=build-fuzz
if [ ! -f "$B/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEGPIPE_FUZZ=ON >/dev/null || exit 2
fi
names=(make_fuzz_seeds)
for t in $targets; do names+=("fuzz_$t"); done
cmake --build "$B" -j"$(nproc)" --target "${names[@]}" || exit 2
seeds=$B/tests/fuzz/seeds
"$B/tests/fuzz/make_fuzz_seeds" "$PWD" "$seeds" >/dev/null || exit 2
failed=""
for t in $targets; do
  corpus=$B/fuzz-corpus/$t art=$B/fuzz-artifacts/$t
  mkdir -p "$corpus" "$art"
  echo "== $t: ${secs} s"
  if "$B/tests/fuzz/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
       -print_final_stats=1 -dict=tests/fuzz/fuzz_json.dict -artifact_prefix="$art/" "$corpus" "$seeds/$t" \
       >"$B/fuzz-$t.log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$B/fuzz-$t.log" | tr '\n' ' '; echo
  else
    echo "CRASH in $t: see $B/fuzz-$t.log and $art/"; tail -30 "$B/fuzz-$t.log"
    failed="$failed $t"
  fi
done
[ -z "$failed" ] && { echo "fuzz: no crash in ${secs} s per target"; exit 0; }
echo "fuzz: crashes in:$failed"; exit 1
