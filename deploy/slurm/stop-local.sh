#!/usr/bin/env bash
# Stop the single-node SLURM started by deploy/slurm/start-local.sh.
#
# Usage: deploy/slurm/stop-local.sh [RUN_DIR]   (default: $SLURM_RUN_DIR, else /tmp/cascadia-slurm)
#
# Stops by the pid files in RUN_DIR only (slurmd, slurmctld, then munged if start-local.sh
# started it), TERM then wait, KILL after 5 s, so it never touches daemons it did not
# start. Jobs still queued are cancelled first so their workers do not outlive slurmd.
# Safe to run when nothing is running.
set -euo pipefail

RUN_DIR="${1:-${SLURM_RUN_DIR:-/tmp/cascadia-slurm}}"
export PATH="$PATH:/usr/sbin:/sbin"

if [ ! -d "$RUN_DIR" ]; then
    echo "nothing to stop: $RUN_DIR does not exist"
    exit 0
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$RUN_DIR/slurmctld.pid" && [ -f "$RUN_DIR/slurm.conf" ]; then
    SLURM_CONF="$RUN_DIR/slurm.conf" scancel --partition=cascadia >/dev/null 2>&1 || true
fi

# TERM the given daemons together (each takes ~2 s to wind down), then wait for all.
stop() {
    local name pid pids=() names=()
    for name in "$@"; do
        if alive "$RUN_DIR/$name.pid"; then
            pid="$(cat "$RUN_DIR/$name.pid")"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid"); names+=("$name")
        fi
        rm -f "$RUN_DIR/$name.pid"
    done
    local i
    for i in "${!pids[@]}"; do
        pid="${pids[$i]}"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "${names[$i]} ($pid) ignored TERM for 5 s; sending KILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stopped ${names[$i]} ($pid)"
    done
}

stop slurmd slurmctld
stop munged  # last: the slurm daemons authenticate through it while shutting down
