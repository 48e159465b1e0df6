#!/usr/bin/env bash
# Simulated hosts on one machine: N network namespaces joined by virtual Ethernet pairs through a
# bridge that lives in a namespace of its own (the machine's own network is never touched). Each host
# namespace has one interface, eth0, with 10.<net>.0.<i>/24 (i = 1..N), and loopback.
#
#   sim_hosts.sh up   NAME N [RATE]   create NAME-h1..NAME-hN and the switch NAME-sw; with RATE
#                                     (tc syntax: 1gbit, 10gbit), each host's eth0 sends at most RATE
#                                     (token bucket), so every link is RATE in each direction
#   sim_hosts.sh rate NAME RATE|off   change (or remove) the shaping of every host
#   sim_hosts.sh cut  NAME I          take host I's link down (its processes keep running, unreachable)
#   sim_hosts.sh mend NAME I          bring it back
#   sim_hosts.sh down NAME            kill every process left in the namespaces, delete them
#   sim_hosts.sh addr NAME I          print host I's address
#   sim_hosts.sh cidr NAME            print the simulation's network (for OMPI_MCA_*_if_include: the
#                                     interface name eth0 is not enough for Open MPI's launcher)
#   sim_hosts.sh rsh  HOST CMD...     run CMD on simulated host HOST (an address of a host of any
#                                     simulation): what MPI's launcher runs instead of ssh
#                                     (OMPI_MCA_plm_rsh_agent=".../sim_hosts.sh rsh")
#
# The kernel of the development machines has tbf and htb but not netem: bandwidth is shaped, added
# latency cannot be (the links keep the namespaces' own latency, tens of microseconds).
# Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2.
set -euo pipefail

net_of() { # NAME -> a /16 index in 10.64-127, stable per name, so that two simulations can coexist
  echo $(( 64 + $(printf '%s' "$1" | cksum | cut -d' ' -f1) % 64 ))
}
addr_of() { echo "10.$(net_of "$1").0.$2"; }

shape() { # NAME I RATE|off
  local ns="$1-h$2"
  tc -n "$ns" qdisc del dev eth0 root 2>/dev/null || true
  [ "$3" = off ] && return 0
  # burst: at least one 10 ms worth at the rate, and at least 64 KiB (a full GSO segment)
  tc -n "$ns" qdisc add dev eth0 root tbf rate "$3" burst 1mbit latency 50ms
}

cmd=${1:-}
case "$cmd" in
  up)
    name=$2 n=$3 rate=${4:-off}
    [[ "$name" =~ ^[a-z][a-z0-9]{0,7}$ ]] || { echo "sim_hosts: NAME must be 1-8 lowercase letters/digits" >&2; exit 2; }
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || { echo "sim_hosts: N must be 1..200" >&2; exit 2; }
    ip netns add "$name-sw"
    ip -n "$name-sw" link add br0 type bridge
    ip -n "$name-sw" link set br0 up
    ip -n "$name-sw" link set lo up
    for i in $(seq 1 "$n"); do
      ns="$name-h$i"
      ip netns add "$ns"
      ip -n "$ns" link add eth0 type veth peer name "p$i" netns "$name-sw"
      ip -n "$name-sw" link set "p$i" master br0 up
      ip -n "$ns" addr add "$(addr_of "$name" "$i")/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
      shape "$name" "$i" "$rate"
    done
    ;;
  rate)
    name=$2 rate=$3
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$name-h[0-9]+$"); do shape "$name" "${ns##*-h}" "$rate"; done
    ;;
  cut) ip -n "$2-sw" link set "p$3" down ;;
  mend) ip -n "$2-sw" link set "p$3" up ;;
  addr) addr_of "$2" "$3" ;;
  cidr) echo "10.$(net_of "$2").0.0/24" ;;
  down)
    name=$2
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$name-(h[0-9]+|sw)$"); do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
      rm -rf "/tmp/sim_hosts.$ns"
    done
    ;;
  rsh)
    shift
    while [[ "${1:-}" == -* ]]; do shift; done  # options meant for ssh (mpirun may pass some)
    host=$1; shift
    ns=""
    for cand in $(ip netns list | awk '{print $1}' | grep -E -- "-h[0-9]+$"); do
      # (the whole output first: with pipefail, `ip ... | grep -q` fails when grep's early exit breaks the pipe)
      addrs=$(ip -n "$cand" -o -4 addr show dev eth0 2>/dev/null || true)
      if [[ "$addrs" == *" inet $host/"* ]]; then ns=$cand; break; fi
    done
    [ -n "$ns" ] || { echo "sim_hosts rsh: no simulated host has address $host" >&2; exit 255; }
    # Its own PID namespace and /proc, as another machine has: a pid of one host means nothing on the
    # others (the memory report must measure each process on its own host).
    # Its own temporary directory for MPI's session files: Open MPI's daemon keeps per-host files (the
    # hwloc topology, PMIx's store) under a path made of the host name and the job, which every
    # simulated host shares; two daemons writing one file crashed one of them.
    mkdir -p "/tmp/sim_hosts.$ns"
    export OMPI_MCA_orte_tmpdir_base="/tmp/sim_hosts.$ns" TMPDIR="/tmp/sim_hosts.$ns"
    exec ip netns exec "$ns" unshare --pid --fork --mount-proc /bin/sh -c "$*"
    ;;
  *)
    sed -n '2,22p' "$0" >&2
    exit 2
    ;;
esac
