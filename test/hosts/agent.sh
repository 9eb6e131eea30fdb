#!/bin/bash
# Open MPI's rsh agent for the bed (OMPI_MCA_plm_rsh_agent): `agent.sh HOST COMMAND...`
# behaves as `ssh HOST COMMAND...` would: HOST is looked up in the bed's hosts file (its
# DNS), reached over the bed's network (a TCP connect to port 22, where "refused" means the
# host answered), and COMMAND then runs as a shell line inside HOST's network namespace,
# with HOST as its host name. Failures print ssh's own messages and exit 255; a host that
# drops packets hangs the agent, as it would hang ssh.
host=$1
shift
addr=$(awk -v h="$host" '$1 == h { print $2 }' /run/commloop-bed/hosts 2>/dev/null)
if [[ -z $addr ]]; then
  echo "ssh: Could not resolve hostname $host: Name or service not known" >&2
  exit 255
fi
err=$( (exec 3<>"/dev/tcp/$addr/22") 2>&1)
case $err in
  *refused*) ;;
  '') ;; # something listens on 22 there: reached too
  *)
    echo "ssh: connect to host $host port 22: ${err##*: }" >&2
    exit 255 ;;
esac
exec ip netns exec "commloop-$host" unshare --uts sh -c 'hostname "$0" && eval "$1"' "$host" "$*"
