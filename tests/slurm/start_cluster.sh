#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (Debian/Ubuntu, as root), for tests/test_slurm.py.
# Idempotent: exits 0 at once when the node already answers. Installs munge + slurm from the distribution
# when absent, writes a munge key and /etc/slurm/slurm.conf (this host as the only node, no cgroups:
# proctrack/linuxproc, task/none, select/cons_tres), then starts munged, slurmctld and slurmd.
# Exit 0: `sinfo` shows the node idle; otherwise non-zero with the reason on stderr (the test then skips).
#   SLURM_TEST_CPUS=N  CPUs the node advertises (default 4: array tasks of a test mostly sleep/import)
set -uo pipefail
say() { echo "start_cluster: $*" >&2; }
node_up() { sinfo -h -N -o "%T" 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

if command -v sinfo >/dev/null && node_up; then say "already running"; exit 0; fi
[ "$(id -u)" = 0 ] || { say "needs root (to install and start munge/slurm)"; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  say "installing munge slurmctld slurmd slurm-client"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null \
    && apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends \
         munge slurmctld slurmd slurm-client >/dev/null \
    || { say "apt-get install failed"; exit 1; }
fi

HOST=$(hostname -s)
CPUS=${SLURM_TEST_CPUS:-4}
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

# munge: a key readable by munge only, and its runtime folders
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key && chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged || { say "munged did not start"; exit 1; }
  sleep 1
fi
munge -n | unmunge >/dev/null 2>&1 || { say "munge does not authenticate"; exit 1; }

MARK="# written by dcrepro tests/slurm/start_cluster.sh: a one-node test cluster"
if [ -s /etc/slurm/slurm.conf ] && ! grep -qxF "$MARK" /etc/slurm/slurm.conf; then
  say "/etc/slurm/slurm.conf exists and was not written by this script: leaving this machine's SLURM alone"
  exit 1
fi
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=dcrepro-test
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
SlurmdParameters=config_overrides
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

pgrep -x slurmctld >/dev/null || slurmctld || { say "slurmctld did not start (see /var/log/slurm/slurmctld.log)"; exit 1; }
pgrep -x slurmd >/dev/null || slurmd || { say "slurmd did not start (see /var/log/slurm/slurmd.log)"; exit 1; }
for _ in $(seq 30); do
  if node_up; then say "node $HOST up ($CPUS CPUs)"; exit 0; fi
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1
  sleep 1
done
say "node $HOST not idle after 30 s: $(sinfo -h -N -o '%T %E' 2>&1)"
exit 1
