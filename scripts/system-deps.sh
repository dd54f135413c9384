#!/usr/bin/env bash
# Install the Debian packages that the integration tests and benchmarks need, when missing.
# Run as root (CI, a fresh Debian machine) or with sudo available; otherwise say what to install.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
# systemd-analyze verifies the service units; systemctl --root installs them into an image tree.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)

# The hub's storage tests also run on PostgreSQL when a server answers on 127.0.0.1:5432 (they
# skip, saying so, when none does). A cluster that is installed but stopped is started here.
start_postgres() {
  command -v pg_isready >/dev/null 2>&1 || return 0
  pg_isready -q -h 127.0.0.1 -p 5432 && return 0
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    for v in $(ls /etc/postgresql 2>/dev/null); do
      echo "system-deps: starting PostgreSQL $v" >&2
      pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    done
  fi
}
start_postgres

[ ${#need[@]} -eq 0 ] && exit 0
echo "system-deps: installing ${need[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "system-deps: run as root or install: ${need[*]}" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package starts a broker on port 1883; the tests start their own on free ports.
