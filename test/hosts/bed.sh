#!/bin/sh
# A test bed of hosts on this machine. Each host is a network namespace "commloop-NAME"
# on a bridge (clbr0, 10.77.0.1/24 in the root namespace; hosts 10.77.0.2, .3, ...) and
# gets its own host name from agent.sh, Open MPI's rsh agent for the bed. The bed's
# names and addresses are in /run/commloop-bed/hosts, which agent.sh reads as ssh reads
# DNS. The hosts have no default route: no packet of theirs leaves the bridge.
#   sh test/hosts/bed.sh up SPEC...   make the hosts (tearing down any old bed first);
#                                     SPEC is NAME (a host on the bridge), NAME:drop (its
#                                     link down from the start: packets to it vanish) or
#                                     NAME:noroute (an address no route leads to)
#   sh test/hosts/bed.sh down         remove every host, the bridge and the hosts file
#   sh test/hosts/bed.sh cut NAME     take NAME's link down (a partition); mend NAME: back up
#   sh test/hosts/bed.sh pids         the processes inside the bed's hosts, one a line
# Idempotent: `up` and `down` clear whatever a killed run left. Needs root and iproute2.
set -eu
. "$(dirname "$0")/../netns.sh"
BR=clbr0
PREFIX=commloop-
STATE=/run/commloop-bed
# A host's link, root side: "clv-NAME" cut to the 15 bytes a link name may hold.
link() { printf 'clv-%s' "$1" | cut -c1-15; }
namespaces() { ip netns list | awk '{print $1}' | grep "^$PREFIX" || true; }

down() {
  netns_down "$PREFIX" clv- "$BR"
  ip route del unreachable 10.77.1.0/24 2>/dev/null || true
  rm -rf "$STATE"
}

case ${1:-} in
  up)
    shift
    down
    mkdir -p "$STATE"
    ip link add "$BR" address 02:77:00:00:00:01 type bridge
    ip addr add 10.77.0.1/24 dev "$BR"
    ip link set "$BR" up
    n=2
    for spec in "$@"; do
      name=${spec%%:*}
      kind=${spec#"$name"}
      ns=$PREFIX$name
      ip netns add "$ns"
      ip -n "$ns" link set lo up
      if [ "$kind" = :noroute ]; then
        # Named and started like any host, but at an address nothing routes to (an
        # "unreachable" route, lest the machine's default route take it elsewhere).
        ip route replace unreachable 10.77.1.0/24
        echo "$name 10.77.1.$n" >>"$STATE/hosts"
      else
        ip link add "$(link "$name")" type veth peer name eth0 netns "$ns"
        ip link set "$(link "$name")" master "$BR"
        [ "$kind" = :drop ] || ip link set "$(link "$name")" up
        ip -n "$ns" addr add "10.77.0.$n/24" dev eth0
        ip -n "$ns" link set eth0 up
        # Fixed neighbours both ways: behind a link that is down, packets vanish (no ARP
        # failure to report "no route"), as they do behind a real partition or firewall.
        mac=$(ip -n "$ns" -o link show eth0 | sed 's/.*link\/ether \([^ ]*\).*/\1/')
        ip neigh replace "10.77.0.$n" lladdr "$mac" dev "$BR" nud permanent
        ip -n "$ns" neigh replace 10.77.0.1 lladdr 02:77:00:00:00:01 dev eth0 nud permanent
        echo "$name 10.77.0.$n" >>"$STATE/hosts"
      fi
      n=$((n + 1))
    done ;;
  down) down ;;
  cut) ip link set "$(link "$2")" down ;;
  mend) ip link set "$(link "$2")" up ;;
  pids) for ns in $(namespaces); do ip netns pids "$ns"; done ;;
  *) echo "usage: sh bed.sh up NAME[:drop|:noroute]... | down | cut NAME | mend NAME | pids" >&2; exit 2 ;;
esac
