#!/usr/bin/env bash
# A pipeline across three "hosts" that are all this machine (address localhost): the launcher starts one
# process per host here, as it would on three machines, and tensors and expert calls go over MPI between
# them: both expert banks on host c, called from a's layers and from b's. What a user without root (no
# network namespaces) or without a second machine can run.
#   - verify: equal to the same pipeline in-process, every boundary, bit for bit; and the golden;
#   - generate: the tokens of the single-host run;
#   - bisect against the golden, and run-segment of a remote segment from a dump;
#   - Qwen3-Omni with audio and an image, the encoders on other hosts: verify bit for bit, the
#     encoders' rows included.
# Needs mpirun: exit 77 (skipped) without it.
#   localhost_test.sh SOURCE_DIR SEGPIPE
set -u
src=$1 B=$2
command -v mpirun >/dev/null 2>&1 || { echo "skipped: no mpirun"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
model=$src/models/tiny-qwen3-moe
# Loopback only: the machine's other interfaces are none of this test's business. A small eager limit
# sends every message but the smallest by rendezvous (it leaves once the peer receives it), as a real
# model's activations go: two calls to the banks of one host, in flight while their answers come back,
# must not wait on each other (net/mpi_link.h).
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_eager_limit=1024
# A pipeline of MODEL over three hosts at this machine; its segments follow on standard input.
three_hosts() {
  printf 'version: 1\nmodel: %s\nhosts:\n  - {name: a}\n  - {name: b, address: localhost}\n' "$1"
  printf '  - {name: c, address: localhost}\nsegments:\n'
  cat
}
three_hosts "$model" >"$tmp/hosts.yaml" <<EOF
  - {name: embed, kind: embeddings, host: a}
  - {name: early, kind: layers, layers: [0, 1], experts: banks, host: a}
  - {name: late, kind: layers, layers: [2, 4], experts: banks, host: b}
  - {name: bank-lo, kind: experts, layers: [0, 4], experts: [0, 3], host: c}
  - {name: bank-hi, kind: experts, layers: [0, 4], experts: [4, 7], host: c}
  - {name: head, kind: lm_head, host: c}
EOF
sed '/^hosts:/,/^segments:/{/^segments:/!d}; s/, host: [abc]//' "$tmp/hosts.yaml" >"$tmp/single.yaml"
ids="5 17 29 41 53 65 77 89"
timeout 120 "$B" verify --pipeline "$tmp/hosts.yaml" >"$tmp/v.out" 2>&1 || { cat "$tmp/v.out"; fail "verify across localhost hosts"; }
grep -q "decode logits bitwise equal" "$tmp/v.out" || { cat "$tmp/v.out"; fail "verify did not compare bit for bit"; }
timeout 120 "$B" verify --pipeline "$tmp/hosts.yaml" --golden "$model/goldens/long.safetensors" >"$tmp/g.out" 2>&1 ||
  { cat "$tmp/g.out"; fail "verify across localhost hosts vs the transformers golden"; }
timeout 120 "$B" generate --pipeline "$tmp/hosts.yaml" --tokens "$ids" --ids --max-new-tokens 64 >"$tmp/multi.txt" 2>"$tmp/e" ||
  { cat "$tmp/e"; fail "generate across localhost hosts"; }
timeout 120 "$B" generate --pipeline "$tmp/single.yaml" --tokens "$ids" --ids --max-new-tokens 64 >"$tmp/single.txt" 2>"$tmp/e" ||
  { cat "$tmp/e"; fail "generate on one host"; }
cmp -s "$tmp/multi.txt" "$tmp/single.txt" || fail "tokens across localhost hosts differ: $(cat "$tmp/multi.txt") vs $(cat "$tmp/single.txt")"
# The debugging commands on a pipeline across hosts: bisect against the golden, a dump and one segment
# rerun alone from it (run-segment runs here whatever host the pipeline places it on).
timeout 120 "$B" verify --pipeline "$tmp/hosts.yaml" --bisect --golden "$model/goldens/long.safetensors" >"$tmp/b.out" 2>&1 ||
  { cat "$tmp/b.out"; fail "bisect across localhost hosts"; }
grep -q "bisect: no divergence" "$tmp/b.out" || { cat "$tmp/b.out"; fail "bisect found a divergence"; }
timeout 120 "$B" dump --pipeline "$tmp/hosts.yaml" --tokens "$ids" --out "$tmp/dump" >/dev/null 2>"$tmp/e" ||
  { cat "$tmp/e"; fail "dump across localhost hosts"; }
timeout 120 "$B" run-segment --pipeline "$tmp/hosts.yaml" --segment late --input "$tmp/dump/late.input.safetensors" \
  --output "$tmp/late.out.safetensors" --expect "$tmp/dump/late.output.safetensors" >"$tmp/r.out" 2>&1 ||
  { cat "$tmp/r.out"; fail "run-segment of a segment of host b, from the dump, differs"; }
# Qwen3-Omni with audio and an image across hosts: the encoders on b and c, the layers split between a
# and b. The committed checkpoint with its media token ids moved inside its small vocabulary and the
# processor's audio windows (as tests/integration/media_inputs_test.cpp makes it).
cp -r "$src/models/tiny-qwen3-omni" "$tmp/omni" && rm -rf "$tmp/omni/goldens"
python3 - "$tmp/omni/config.json" <<'PY' || fail "making the Omni checkpoint"
import json, sys
c = json.load(open(sys.argv[1]))
t = c["thinker_config"]
t.update(audio_token_id=1190, image_token_id=1191, video_token_id=1192, audio_start_token_id=1193,
         audio_end_token_id=1194, vision_start_token_id=1195, vision_end_token_id=1196)
t["audio_config"].update(n_window=50, n_window_infer=200)
json.dump(c, open(sys.argv[1], "w"))
PY
three_hosts "$tmp/omni" >"$tmp/omni.yaml" <<EOF
  - {name: vision, kind: vision_encoder, host: b}
  - {name: audio, kind: audio_encoder, host: c}
  - {name: embed, kind: embeddings, host: a}
  - {name: early, kind: layers, layers: [0, 0], host: a}
  - {name: late, kind: layers, layers: [1, 2], host: b}
  - {name: head, kind: lm_head, host: c}
EOF
timeout 120 "$B" verify --pipeline "$tmp/omni.yaml" --tokens "1 2 3" --image "$src/tests/data/media/shapes.png" \
  --audio "$src/tests/data/media/speech.wav" >"$tmp/m.out" 2>&1 || { cat "$tmp/m.out"; fail "verify with media across localhost hosts"; }
for row in vision_encoder.0 audio_encoder.1 layers.0.output layers.2.output logits; do
  grep -Eq "^  $row +.* identical" "$tmp/m.out" || { cat "$tmp/m.out"; fail "with media across hosts, $row is not identical"; }
done
grep -q "decode logits bitwise equal" "$tmp/m.out" || { cat "$tmp/m.out"; fail "with media across hosts, the decode steps differ"; }
echo "ok: three hosts on localhost: verify bit for bit and against the golden, bisect, dump and run-segment; tokens equal one host; audio and an image across hosts equal one process"
