#!/usr/bin/env bash
# A pipeline across three simulated hosts (tools/net/sim_hosts.sh): the embeddings, the first layers
# and one expert bank on host a (where segpipe runs), the later layers on host b, the other expert bank
# and the lm_head on host c; started by MPI's launcher, tensors over MPI between the hosts. Every layers
# segment calls both banks: a bank of its own host and one of another (a's layers call c's bank through
# a's proxy; b's layers call banks on a and on c, none on b), so expert requests cross the network in
# every direction the proxies have: from rank 0, to rank 0, between two agents.
#   - verify: the run across hosts equals the same pipeline in-process, every boundary, bit for bit;
#     and it passes the transformers golden;
#   - the memory report measures each process on its own host;
#   - its greedy tokens equal the single-host run's; so does a dump, file for file;
#   - a remote segment killed mid-run (a layers segment; an expert bank serving another host): exit 3
#     naming the segment and its host; with --restart the run goes on and gives the uninterrupted tokens;
#   - a host's link cut mid-run: exit 3 naming the segment and the host within a bound, and nothing of
#     the run left on any host afterwards.
# Needs root (network namespaces) and mpirun: exit 77 (skipped) without them.
#   multihost_test.sh SOURCE_DIR SEGPIPE
set -u
src=$1 B=$2
sim="$src/tools/net/sim_hosts.sh"
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (network namespaces)"; exit 77; }
command -v mpirun >/dev/null 2>&1 || { echo "skipped: no mpirun"; exit 77; }
name=mh$(( $$ % 100000 ))
tmp=$(mktemp -d)
# Every process of this test carries this marker: whatever still does at the end is a leftover.
export SEGPIPE_MULTIHOST_TEST="$name-$RANDOM"
leftovers() {
  for p in $(grep -lsz "^SEGPIPE_MULTIHOST_TEST=$SEGPIPE_MULTIHOST_TEST\$" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
    [ "$p" = $$ ] && continue
    q=$p; while [ -n "$q" ] && [ "$q" != 1 ] && [ "$q" != 0 ] && [ "$q" != $$ ]; do q=$(awk '{print $4}' /proc/$q/stat 2>/dev/null); done
    [ "$q" = $$ ] && [ "$(awk '{print $4}' /proc/$p/stat 2>/dev/null)" = $$ ] && continue  # this script's own helpers
    c=$({ tr '\0' ' ' </proc/$p/cmdline; } 2>/dev/null | cut -c1-100); [ -n "$c" ] && echo "$p $c"
  done
}
cleanup() { bash "$sim" down "$name"; rm -rf "$tmp"; }
fail() { echo "FAIL: $*"; cleanup; exit 1; }
trap cleanup EXIT
bash "$sim" up "$name" 3 || fail "sim_hosts up"
a1=$(bash "$sim" addr "$name" 1) a2=$(bash "$sim" addr "$name" 2) a3=$(bash "$sim" addr "$name" 3)
cidr=$(bash "$sim" cidr "$name")
# A small eager limit: every message but the smallest goes by rendezvous (it leaves once the peer takes
# it), as a real model's activations and logits do, so a peer that is cut off mid-send is what the
# faults below meet (net/mpi_link.h: a send to a lost peer ends after timeout_ms).
export OMPI_MCA_plm_rsh_agent="$sim rsh" OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=$cidr \
       OMPI_MCA_oob_tcp_if_include=$cidr OMPI_MCA_btl_tcp_eager_limit=1024
model=$src/models/tiny-qwen3-moe
cat >"$tmp/hosts.yaml" <<EOF
version: 1
model: $model
timeout_ms: 2000
hosts:
  - {name: a, address: $a1}
  - {name: b, address: $a2}
  - {name: c, address: $a3}
segments:
  - {name: embed, kind: embeddings, host: a}
  - {name: early, kind: layers, layers: [0, 1], experts: banks, host: a}
  - {name: late, kind: layers, layers: [2, 4], experts: banks, host: b}
  - {name: bank-lo, kind: experts, layers: [0, 4], experts: [0, 3], host: a}
  - {name: bank-hi, kind: experts, layers: [0, 4], experts: [4, 7], host: c}
  - {name: head, kind: lm_head, host: c}
EOF
# The same pipeline on this machine alone.
sed '/^hosts:/,/^segments:/{/^segments:/!d}; s/, host: [abc]//' "$tmp/hosts.yaml" >"$tmp/single.yaml"
on_a() { ip netns exec "$name-h1" "$@"; }
ids="11 22 33 44 55 66 77 88 99 111 222 333"

on_a timeout 120 "$B" verify --pipeline "$tmp/hosts.yaml" --json "$tmp/v.json" >"$tmp/v.out" 2>&1 ||
  { cat "$tmp/v.out"; fail "verify across hosts vs in-process"; }
grep -q "decode logits bitwise equal" "$tmp/v.out" || { cat "$tmp/v.out"; fail "verify did not compare bit for bit"; }
# The report names each segment's host.
python3 - "$tmp/v.json" <<'PY' || fail "verify's report does not name each segment's host"
import json, sys
r = json.load(open(sys.argv[1]))
hosts = {}
def walk(x):
    if isinstance(x, dict):
        if "name" in x and "host" in x and "pid" in x: hosts[x["name"]] = x["host"]
        for v in x.values(): walk(v)
    elif isinstance(x, list):
        for v in x: walk(v)
walk(r)
want = {"embed": "a", "early": "a", "late": "b", "bank-lo": "a", "bank-hi": "c", "head": "c"}
sys.exit(0 if hosts == want else (print("hosts in the report:", hosts) or 1))
PY
on_a timeout 120 "$B" verify --pipeline "$tmp/hosts.yaml" --golden "$model/goldens/long.safetensors" >"$tmp/g.out" 2>&1 ||
  { cat "$tmp/g.out"; fail "verify across hosts vs the transformers golden"; }
# The memory report: each process measured on its own host (each simulated host has its own PID
# namespace and /proc, so a pid read on the orchestrator's host would name another process or none).
on_a timeout 120 "$B" memory --pipeline "$tmp/hosts.yaml" --no-inproc --json "$tmp/m.json" >"$tmp/m.out" 2>&1 ||
  { cat "$tmp/m.out"; fail "memory across hosts"; }
python3 - "$tmp/m.json" <<'PY' || { cat "$tmp/m.out"; fail "the memory report across hosts"; }
import json, sys
r = json.load(open(sys.argv[1]))
segs = r["segmented"]["segments"] if "segmented" in r else r["segments"]
want = {"embed": "a", "early": "a", "late": "b", "bank-lo": "a", "bank-hi": "c", "head": "c"}
got = {s["name"]: s.get("host") for s in segs}
bad = [f"{s['name']}: {k}" for s in segs for k in ("rss_bytes", "pss_bytes", "peak_rss_bytes", "weight_bytes")
       if not s[k] > 0]
# Its own weights resident, none of another segment's: the pagemap of the right process was read.
bad += [f"{s['name']}: weights_resident {s['weights_resident']}" for s in segs
        if s["weights_resident"]["own_bytes"] <= 0 or s["weights_resident"]["foreign_pages"] != 0]
if got != want or bad or not r.get("targets_met", False):
    print("hosts:", got, "problems:", bad, "targets_met:", r.get("targets_met")); sys.exit(1)
PY
on_a timeout 120 "$B" generate --pipeline "$tmp/hosts.yaml" --tokens "$ids" --ids --max-new-tokens 40 >"$tmp/multi.txt" 2>"$tmp/e" ||
  { cat "$tmp/e"; fail "generate across hosts"; }
timeout 120 "$B" generate --pipeline "$tmp/single.yaml" --tokens "$ids" --ids --max-new-tokens 40 >"$tmp/single.txt" 2>"$tmp/e" ||
  { cat "$tmp/e"; fail "generate on one host"; }
cmp -s "$tmp/multi.txt" "$tmp/single.txt" || fail "tokens across hosts differ from one host: $(cat "$tmp/multi.txt") vs $(cat "$tmp/single.txt")"
on_a timeout 120 "$B" dump --pipeline "$tmp/hosts.yaml" --tokens "$ids" --out "$tmp/dump-multi" >/dev/null 2>"$tmp/e" ||
  { cat "$tmp/e"; fail "dump across hosts"; }
"$B" dump --pipeline "$tmp/single.yaml" --tokens "$ids" --out "$tmp/dump-single" >/dev/null 2>&1 || fail "dump on one host"
for f in "$tmp"/dump-single/*; do
  [ "$(basename "$f")" = manifest.json ] && continue
  cmp -s "$f" "$tmp/dump-multi/$(basename "$f")" || fail "dump file $(basename "$f") differs across hosts"
done
echo "ok: verify (bit for bit, golden), memory measured on each host, tokens and dumps equal one host"

# A remote segment killed mid-run (as soon as it exists: on an idle machine a run of this tiny model
# decodes over a thousand tokens a second, so the longest run the context allows, killed early; a kill
# that lands while it loads is the same failure, reported "during start-up").
long=2000
on_a timeout 120 "$B" generate --pipeline "$tmp/hosts.yaml" --tokens "$ids" --ids --max-new-tokens $long >"$tmp/full.txt" 2>"$tmp/e" ||
  { cat "$tmp/e"; fail "the uninterrupted long run"; }
kill_segment() {  # NAME [DELAY]: kill its process DELAY seconds after it exists
  for _ in $(seq 1 200); do
    p=$(pgrep -f "\"name\":\"$1\"" | head -1)
    [ -n "$p" ] && { sleep "${2:-0}"; kill -9 "$p"; return; }
    sleep 0.02
  done
}
# Both once the run decodes: the layers segment of host b, which calls banks on a and c (killed during
# such a call or between two: its restart waits for the proxies to answer the calls it left), and the
# bank of host c, which serves the layers of a and b (killed within an expert call from another host, or
# between two).
for victim in late:b:0.3 bank-hi:c:0.5; do
  IFS=: read -r seg host delay <<<"$victim"
  kill_segment "$seg" "$delay" &
  on_a timeout 120 "$B" generate --pipeline "$tmp/hosts.yaml" --tokens "$ids" --ids --max-new-tokens $long >/dev/null 2>"$tmp/e"
  rc=$?
  wait
  [ $rc = 3 ] || { cat "$tmp/e"; fail "a killed remote segment ($seg): exit $rc, expected 3"; }
  grep -q "segment '$seg'.*host '$host'" "$tmp/e" || { cat "$tmp/e"; fail "the message does not name segment '$seg' and host '$host'"; }
  echo "  $seg killed: $(grep -m1 "segment '$seg'" "$tmp/e")"
  kill_segment "$seg" "$delay" &
  on_a timeout 120 "$B" generate --restart --pipeline "$tmp/hosts.yaml" --tokens "$ids" --ids --max-new-tokens $long >"$tmp/restarted.txt" 2>"$tmp/e"
  rc=$?
  wait
  [ $rc = 0 ] || { cat "$tmp/e"; fail "--restart with a killed remote segment ($seg): exit $rc"; }
  grep -q "restarting it" "$tmp/e" || { cat "$tmp/e"; fail "--restart: segment '$seg' was not restarted"; }
  echo "  $seg killed, --restart: $(grep -m1 "restarting it" "$tmp/e")"
  cmp -s "$tmp/restarted.txt" "$tmp/full.txt" || fail "--restart across hosts ($seg) changed the tokens"
done
echo "ok: a killed remote segment (layers; a bank serving other hosts) is exit 3 naming it and its host; --restart repeats the step exactly"

# Host c's link cut mid-run: exit 3 naming the segment and the host, and nothing left anywhere.
cut_c() {
  for _ in $(seq 1 200); do
    pgrep -f '"name":"head"' >/dev/null && { sleep 0.2; bash "$sim" cut "$name" 3; return; }
    sleep 0.02
  done
}
cut_c &
start=$(date +%s)
on_a timeout 120 "$B" generate --pipeline "$tmp/hosts.yaml" --tokens "$ids" --ids --max-new-tokens $long >/dev/null 2>"$tmp/e"
rc=$?
took=$(( $(date +%s) - start ))
wait
[ $rc = 3 ] || { cat "$tmp/e"; fail "a cut link: exit $rc, expected 3"; }
# Whichever notices first: rank 0 waiting on the lm_head, or b's proxy waiting on the bank of c.
grep -Eq "segment '(head|bank-hi)'.* host 'c'" "$tmp/e" || { cat "$tmp/e"; fail "the message does not name a segment of host 'c' and the host"; }
# timeout_ms 2000: noticed within it, plus the launcher's keepalive (1 s + 2 probes of 1 s) to end the job.
[ $took -le 15 ] || fail "a cut link took $took s to end the run"
echo "  cut: $(grep -m1 "host 'c'" "$tmp/e")"
left=""
for _ in $(seq 1 20); do
  left=$(leftovers)
  [ -z "$left" ] && break
  sleep 0.5
done
[ -z "$left" ] || fail "left after the cut (link still down): $left"
bash "$sim" mend "$name" 3
echo "ok: a cut link is exit 3 naming a segment of host 'c' and the host after $took s; nothing left on any host"
left=$(leftovers)
[ -z "$left" ] || fail "left behind: $left"
echo "ok"
