#!/usr/bin/env bash
# Stop the one-node test cluster started by tests/slurm/start.sh: cancels all jobs, stops
# slurmd and slurmctld (by their pid files) and munged. `--quiet` prints nothing.
set -uo pipefail
QUIET=0
[[ "${1:-}" == --quiet ]] && QUIET=1
say() { [[ $QUIET == 1 ]] || echo "slurm/stop.sh: $*" >&2; }

stop_pidfile() {  # name pidfile
  local pid
  [[ -s "$2" ]] || return 0
  pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    say "stopped $1 ($pid)"
  fi
  rm -f "$2"
}

if command -v scancel >/dev/null && [[ -s /run/slurmctld.pid ]]; then
  timeout 10 scancel --user root >/dev/null 2>&1 || true
fi
# dask workers of cancelled jobs that proctrack/linuxproc lost track of (re-parented to init)
pkill -9 -P 1 -f "distributed.cli.dask_worker .*SLURMCluster" 2>/dev/null || true
stop_pidfile slurmd /run/slurmd.pid
stop_pidfile slurmctld /run/slurmctld.pid
stop_pidfile munged /run/munge/munged.pid
exit 0
