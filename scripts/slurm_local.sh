#!/usr/bin/env bash
# A one-node Slurm on localhost for tests and CI (Debian 12's slurm-wlm 22.05 + munge; CPUs only):
#   bash scripts/slurm_local.sh start   # writes /etc/slurm/slurm.conf, starts munged, slurmctld, slurmd
#   bash scripts/slurm_local.sh stop    # stops what start started
#   bash scripts/slurm_local.sh status
# Run as root (CI, containers). The config is written only if /etc/slurm/slurm.conf is absent or was
# written by this script (first line marker), so a real cluster's config is never touched.
# State and logs live under $SL_SLURM_DIR (default /tmp/sl-slurm). The node runs jobs with
# proctrack/pgid and task/none because containers usually have no usable cgroup hierarchy.
set -euo pipefail
DIR=${SL_SLURM_DIR:-/tmp/sl-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# scalinglab slurm_local.sh"
NODE=$(hostname -s)

start() {
  for b in munged slurmctld slurmd sbatch; do
    command -v "$b" >/dev/null || { echo "slurm_local: $b not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
  done
  if [ -f "$CONF" ] && ! head -1 "$CONF" | grep -qF "$MARK"; then
    echo "slurm_local: $CONF exists and was not written by this script; not touching it" >&2
    exit 1
  fi
  mkdir -p "$DIR"/{ctld,d,log} /etc/slurm
  local cpus
  cpus=$(nproc)
  cat > "$CONF" <<EOF
$MARK (one node, localhost; state in $DIR)
ClusterName=sllocal
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MaxArraySize=1001
KillWait=30
SchedulerParameters=bf_interval=1,sched_interval=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  # munge: Debian's package makes the key; make one if it is missing.
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- munged --force 2>/dev/null || munged --force
  fi
  pgrep -x slurmctld >/dev/null || slurmctld -f "$CONF"
  pgrep -x slurmd >/dev/null || slurmd -f "$CONF" -N "$NODE"
  for _ in $(seq 1 60); do
    if sinfo -h -o "%T" 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then
      echo "slurm_local: up (node $NODE, $cpus CPUs, state in $DIR)"
      return 0
    fi
    sleep 1
  done
  echo "slurm_local: the node did not come up; logs in $DIR/log" >&2
  sinfo >&2 || true
  tail -20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
  exit 1
}

stop_pidfile() {
  local f=$1
  [ -f "$f" ] || return 0
  local pid
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  rm -f "$f"
}

stop() {
  scancel --user=root 2>/dev/null || true
  stop_pidfile "$DIR/slurmd.pid"
  stop_pidfile "$DIR/slurmctld.pid"
  # munged was started here only if it was not running; it holds nothing of ours: leave it.
  echo "slurm_local: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo; squeue ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
