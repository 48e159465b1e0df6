#!/bin/sh
# The simulated hosts of the multi-host tests (tools/net/sim_hosts.sh): two namespaces reach each other
# over their link and only over it (a cut link stops MPI's launcher from reaching the host), an MPI job
# spans them through the rsh agent, shaping limits the bandwidth, and `down` leaves no namespace and
# no process. Needs root and the MPI tools: exit 77 (skipped) without them.
#   sim_hosts_test.sh SOURCE_DIR HOP_BENCH_BINARY
set -u
src=$1 bench=$2
sim="$src/tools/net/sim_hosts.sh"
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (network namespaces)"; exit 77; }
command -v mpirun >/dev/null 2>&1 || { echo "skipped: no mpirun"; exit 77; }
name=st$(( $$ % 100000 ))
fail() { echo "FAIL: $*"; bash "$sim" down "$name"; exit 1; }
trap 'bash "$sim" down "$name"' EXIT
bash "$sim" up "$name" 2 || fail "up"
a1=$(bash "$sim" addr "$name" 1) a2=$(bash "$sim" addr "$name" 2)
export OMPI_MCA_plm_rsh_agent="$sim rsh" OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=$(bash "$sim" cidr "$name") \
       OMPI_MCA_oob_tcp_if_include=$(bash "$sim" cidr "$name") OMPI_MCA_mpi_yield_when_idle=1
run_bench() {
  timeout 120 ip netns exec "$name-h1" mpirun --allow-run-as-root -np 1 --host "$a1" "$bench" --reps 3 --json "$1" : \
    -np 1 --host "$a2" "$bench" >"$out/log" 2>&1 || { cat "$out/log"; return 1; }
}
out=$(mktemp -d)
run_bench "$out/free.json" || fail "MPI job across two simulated hosts"
bash "$sim" rate "$name" 100mbit || fail "rate"
run_bench "$out/shaped.json" || fail "MPI job on a shaped link"
free=$(sed 's/.*"ceiling_gbs":\([0-9.e+-]*\).*/\1/' "$out/free.json")
shaped=$(sed 's/.*"ceiling_gbs":\([0-9.e+-]*\).*/\1/' "$out/shaped.json")
rm -rf "$out"
echo "ceiling unshaped $free GB/s, at 100mbit $shaped GB/s"
# 100 Mbit/s = 0.0125 GB/s: the token bucket must hold it there (within the burst's allowance).
awk -v s="$shaped" 'BEGIN { exit !(s > 0.005 && s < 0.0140) }' || fail "shaped ceiling $shaped GB/s is not ~0.0125"
# Whether host 1 opens a TCP connection to a listener on host 2 within SECONDS (retrying: a link just
# brought back needs its neighbour entry relearned).
reach() {
  ready=$(mktemp -u)
  ip netns exec "$name-h2" python3 -c "
import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('$a2', 47001)); s.listen(8); open('$ready', 'w').close(); s.settimeout($1 + 2)
try:
    while True: s.accept()[0].close()
except OSError: pass" &
  lp=$!
  i=0; while [ ! -e "$ready" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
  ip netns exec "$name-h1" python3 -c "
import socket, sys, time
end = time.time() + $1
while time.time() < end:
    s = socket.socket(); s.settimeout(max(0.1, end - time.time()))
    if s.connect_ex(('$a2', 47001)) == 0: sys.exit(0)
    time.sleep(0.1)
sys.exit(1)"
  r=$?
  kill $lp 2>/dev/null; wait $lp 2>/dev/null; rm -f "$ready"
  return $r
}
reach 5 || fail "host 2 is not reachable from host 1"
bash "$sim" cut "$name" 2 || fail "cut"
reach 2 && fail "host 2 still reachable after its link was cut"
bash "$sim" mend "$name" 2 || fail "mend"
reach 10 || fail "host 2 not reachable again after mend"
bash "$sim" down "$name"
trap - EXIT
left=$(ip netns list | grep -E "^$name-" || true)
[ -z "$left" ] || { echo "FAIL: namespaces left: $left"; exit 1; }
echo "ok"
