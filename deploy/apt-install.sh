#!/usr/bin/env bash
# Sourced by deploy/*/install.sh: apt_install PACKAGE... installs Debian packages with
# apt-get, as root or through sudo, and says what to do where neither is possible.

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install.sh: apt-get not found; install $* with your package manager" >&2
        exit 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "install.sh: must run as root (or with sudo available)" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y --no-install-recommends "$@"
}
