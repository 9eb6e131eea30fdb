# Sourced by the beds (test/hosts/bed.sh, test/slurm/bed.sh): the teardown they share.
# netns_down PREFIX LINK_PREFIX BRIDGE: kills whatever runs in the namespaces named
# PREFIX*, removes them, every root-side link named LINK_PREFIX*, and the bridge. Each bed
# has its own prefixes, so one bed's teardown leaves the other's alone.
netns_down() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^$1" || true); do
    # Whatever a job or a killed test run left inside goes with it.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$2" || true); do
    ip link del "$l" 2>/dev/null || true
  done
  ip link del "$3" 2>/dev/null || true
}
