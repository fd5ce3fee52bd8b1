#!/usr/bin/env bash
# Install the Debian packages for a single-node SLURM (slurm-wlm + munge), used by
# tests and CI through deploy/slurm/start-local.sh.
#
# Idempotent and cheap when already installed: it touches apt only if `slurmctld`
# is missing, so CI can call it unconditionally before pytest. Needs root (or sudo)
# on Debian/Ubuntu.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)

# /usr/sbin is not on every user's PATH; the daemons live there on Debian.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

if have slurmctld && have slurmd && have sinfo && have munged; then
    echo "slurm already installed: $(slurmctld -V 2>/dev/null || echo slurmctld)"
    exit 0
fi

# shellcheck source=../apt-install.sh
source "$(dirname "$0")/../apt-install.sh"
apt_install "${PACKAGES[@]}"
echo "slurm installed: $(slurmctld -V 2>/dev/null || echo slurmctld)"
