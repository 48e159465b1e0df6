#!/usr/bin/env bash
# The per-hop cost between two simulated hosts (sim_hosts.sh) at each shaped link rate, through MPI as
# a multi-host pipeline sends its tensors. Writes one JSON per rate under OUT (default ./hop-out) and
# prints the tables. Run on an otherwise idle machine: MPI ranks poll, and on a busy one a hop's time is
# the scheduler's, not the link's.
#   tools/net/bench_hops.sh BUILD_DIR [OUT] [RATES...]     (default rates: off 10gbit 1gbit)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: bench_hops.sh BUILD_DIR [OUT] [RATES...]}
out=${2:-hop-out}
shift $(( $# >= 2 ? 2 : 1 ))
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(off 10gbit 1gbit)
bin=$build/tools/net/segpipe_hop_bench
[ -x "$bin" ] || { echo "bench_hops: $bin is missing (MPI not found when $build was configured?)" >&2; exit 2; }
mkdir -p "$out"
sim=tools/net/sim_hosts.sh
name=hop$$
name=${name:0:8}
trap 'bash $sim down $name' EXIT
bash $sim up "$name" 2
a1=$(bash $sim addr "$name" 1) a2=$(bash $sim addr "$name" 2)
export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_plm_rsh_agent="$PWD/$sim rsh" OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=$(bash $sim cidr "$name") \
       OMPI_MCA_oob_tcp_if_include=$(bash $sim cidr "$name")
for r in "${rates[@]}"; do
  bash $sim rate "$name" "$r"
  echo "== link: $r"
  ip netns exec "$name-h1" mpirun --allow-run-as-root -np 1 --host "$a1" "$bin" --json "$out/hop-$r.json" : \
     -np 1 --host "$a2" "$bin"
done
