#!/usr/bin/env bash
# Tokens/s of a pipeline across three simulated hosts (sim_hosts.sh) against the same pipeline on one
# host, at each shaped link rate: what segpipe generate reports (prefill and decode tokens/s), median of
# RUNS runs. The model: bench-moe's shapes cut to LAYERS layers (hidden 1024: a decode step sends 4 KiB
# per hop; a 128-token prefill 512 KiB). HEAD=c (default) puts the lm_head on the third host, so the
# logits [vocab] cross a link every token; HEAD=a keeps it beside the orchestrator (and the embeddings on
# the third host), so only hidden states cross. BANKS=b (default) runs the expert banks beside the
# layers they serve; BANKS=c on the third host, so that every MoE layer's expert call crosses a link
# there and back (through b's proxy). Run on an otherwise idle machine.
#   tools/net/bench_multihost.sh SEGPIPE [OUT] [RATES...]     (default rates: off 10gbit 1gbit)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$(realpath "${1:?usage: bench_multihost.sh SEGPIPE [OUT] [RATES...]}")
out=${2:-multihost-out}
shift $(( $# >= 2 ? 2 : 1 ))
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(off 10gbit 1gbit)
mkdir -p "$out"
RUNS=${RUNS:-3} LAYERS=${LAYERS:-4} NEW=${NEW:-64} PROMPT=${PROMPT:-128} HEAD=${HEAD:-c} BANKS=${BANKS:-b}
case "$BANKS" in b|c) ;; *) echo "BANKS must be b or c" >&2; exit 2 ;; esac
case "$HEAD" in c) embed_host=a head_host=c ;; a) embed_host=c head_host=a ;; *) echo "HEAD must be a or c" >&2; exit 2 ;; esac
sim=tools/net/sim_hosts.sh
name=bm$(( $$ % 100000 ))
name=${name:0:8}
model=$(mktemp -d)
trap 'bash $sim down $name; rm -rf "$model"' EXIT
"$B" make-model --preset bench-moe --num-layers "$LAYERS" --out "$model" --seed 3 >/dev/null
bash $sim up "$name" 3
a1=$(bash $sim addr "$name" 1) a2=$(bash $sim addr "$name" 2) a3=$(bash $sim addr "$name" 3)
c=$(bash $sim cidr "$name")
export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_plm_rsh_agent="$PWD/$sim rsh" OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=$c \
       OMPI_MCA_oob_tcp_if_include=$c
half=$(( LAYERS / 2 ))
cat >"$out/hosts.yaml" <<YAML
version: 1
model: $model
hosts:
  - {name: a, address: $a1}
  - {name: b, address: $a2}
  - {name: c, address: $a3}
segments:
  - {name: embed, kind: embeddings, host: $embed_host}
  - {name: early, kind: layers, layers: [0, $(( half - 1 ))], host: a}
  - {name: late, kind: layers, layers: [$half, $(( LAYERS - 1 ))], experts: banks, host: b}
  - {name: bank-lo, kind: experts, layers: [$half, $(( LAYERS - 1 ))], experts: [0, 15], host: $BANKS}
  - {name: bank-hi, kind: experts, layers: [$half, $(( LAYERS - 1 ))], experts: [16, 31], host: $BANKS}
  - {name: head, kind: lm_head, host: $head_host}
YAML
sed '/^hosts:/,/^segments:/{/^segments:/!d}; s/, host: [abc]//' "$out/hosts.yaml" >"$out/single.yaml"
ids=$(seq 1 "$PROMPT" | tr '\n' ' ')
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
res="$out/results.txt"
echo "# label prefill_tok_s decode_tok_s (median of $RUNS; bench-moe cut to $LAYERS layers, prompt $PROMPT, $NEW new tokens)" >"$res"
gen() { ip netns exec "$name-h1" "$B" "$@"; }
row_p() { # label pipeline
  local label=$1 p=$2 pr=() de=()
  for _ in $(seq 1 "$RUNS"); do
    read -r x y <<<"$(gen generate --pipeline "$p" --tokens "$ids" --ids --max-new-tokens "$NEW" 2>&1 >/dev/null | tail -1 |
      sed -n 's/.*prefill \([0-9.]*\) tokens\/s; decode \([0-9.]*\) tokens\/s.*/\1 \2/p')"
    pr+=("$x"); de+=("$y")
  done
  echo "$label $(printf '%s\n' "${pr[@]}" | median) $(printf '%s\n' "${de[@]}" | median)" | tee -a "$res"
}
row_p one-host "$out/single.yaml"
for r in "${rates[@]}"; do
  bash $sim rate "$name" "$r"
  row_p "three-hosts-$r" "$out/hosts.yaml"
done
