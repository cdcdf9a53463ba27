#!/usr/bin/env bash
# The Docker engine for the docker sandbox tests: Debian's docker.io, dockerd in the background (no systemd), and the
# agentflow/python sandbox image built offline (debootstrap + docker import; no image registry is needed).
# Idempotent: an installed engine, a running daemon and an existing image are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v python3 >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq docker.io debootstrap python3 >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    # a daemon still shutting down keeps its pid file: wait for it, then drop a stale one
    if [ -f /var/run/docker.pid ]; then
        old=$(cat /var/run/docker.pid)
        for _ in $(seq 1 40); do kill -0 "$old" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$old" 2>/dev/null || rm -f /var/run/docker.pid
    fi
    nohup dockerd >/var/log/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; tail -20 /var/log/dockerd.log >&2; exit 1; }
fi
# The venv does not exist yet: the builder needs only the system python3.
sandboxes/build-offline.sh python --if-missing
