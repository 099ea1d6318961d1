#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this host, for the tests marked `slurm`.
#
# Installs slurm-wlm and munge from Debian (when missing), writes /etc/slurm/slurm.conf for
# this host (CPUs from nproc, memory from MemAvailable), creates the munge key, starts munged
# (as user munge), slurmctld and slurmd without systemd, and waits until `sinfo` shows the
# node idle. Idempotent: when the cluster already answers with an idle node it only says so.
#
# Settings (environment):
#   VARCALL_SLURM_CPUS      scheduling slots on the node (default: nproc, at least 4, so the
#                           driver job plus two 1-core worker jobs fit on a 2-core test host)
#   VARCALL_SLURM_MEM_MB    memory of the node in MB (default: 80% of MemAvailable)
#   VARCALL_SLURM_WAIT      seconds to wait for the node to become idle (default: 60)
#   VARCALL_SLURM_RESTART=1 stop running daemons and rewrite the config first
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/lib/slurm-varcall
LOG=/var/log/slurm-varcall
WAIT=${VARCALL_SLURM_WAIT:-60}
HOST=$(hostname -s)

say() { echo "slurm/start.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

node_idle() {
  command -v sinfo >/dev/null 2>&1 || return 1
  local st
  st=$(timeout 10 sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -1) || return 1
  [[ "$st" == idle* || "$st" == mix* || "$st" == alloc* ]]
}

if [[ "${VARCALL_SLURM_RESTART:-0}" != 1 ]] && node_idle; then
  say "SLURM already running; node $HOST is $(sinfo -h -n "$HOST" -o '%t')"
  exit 0
fi

# ------------------------------------------------------------------ install
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  [[ $(id -u) == 0 ]] || die "slurm-wlm/munge are missing and this is not root; run: sudo apt-get install slurm-wlm munge"
  command -v apt-get >/dev/null || die "slurm-wlm/munge are missing and apt-get is not available; install SLURM and munge by hand"
  export DEBIAN_FRONTEND=noninteractive
  say "installing slurm-wlm and munge from Debian"
  if ! apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
      || die "apt-get install slurm-wlm munge failed"
  fi
fi
[[ $(id -u) == 0 ]] || die "starting slurmctld/slurmd needs root; run: sudo bash $0"

# ------------------------------------------------------------------ stop what runs (restart)
bash "$(dirname "$0")/stop.sh" --quiet || true

# ------------------------------------------------------------------ munge
id munge >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin munge
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  say "creating the munge key"
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile=/etc/munge/munge.key --force
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0600 /etc/munge/munge.key
if ! pgrep -u munge -x munged >/dev/null; then
  # munged refuses to run as root.
  runuser -u munge -- /usr/sbin/munged || die "munged did not start; see /var/log/munge/munged.log"
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || die "munge does not work; see /var/log/munge/munged.log"

# ------------------------------------------------------------------ slurm.conf
NPROC=$(nproc)
CPUS=${VARCALL_SLURM_CPUS:-$(( NPROC < 4 ? 4 : NPROC ))}
AVAIL_MB=$(awk '/^MemAvailable:/ {print int($2/1024)}' /proc/meminfo)
MEM=${VARCALL_SLURM_MEM_MB:-$(( AVAIL_MB * 8 / 10 ))}
DEFMEM=$(( MEM / CPUS ))
install -d -m 0755 "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOG"
cat > "$CONF" <<CONF
# Written by varcall tests/slurm/start.sh for a one-node test cluster on $HOST.
ClusterName=varcall
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$DEFMEM
# the node may advertise more slots than cores ($NPROC) on tiny test hosts
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=60
KillWait=5
Waittime=0
MessageTimeout=10
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
say "wrote $CONF: $CPUS slots on $NPROC cores, ${MEM} MB"

# ------------------------------------------------------------------ daemons
slurmctld -c || die "slurmctld did not start; see $LOG/slurmctld.log"
slurmd || die "slurmd did not start; see $LOG/slurmd.log"

for _ in $(seq $(( WAIT * 2 ))); do
  if node_idle; then
    say "SLURM is up: node $HOST is idle"
    exit 0
  fi
  # a node left DOWN/DRAIN by an earlier run comes back
  if timeout 5 sinfo -h -n "$HOST" -o '%t' 2>/dev/null | grep -qE 'down|drain|drng'; then
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
  fi
  sleep 0.5
done
die "node $HOST is not idle after ${WAIT}s (sinfo: $(sinfo -h -o '%n %t %E' 2>&1 | head -3)); see $LOG/slurmctld.log and $LOG/slurmd.log"
