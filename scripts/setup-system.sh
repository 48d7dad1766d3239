#!/usr/bin/env bash
# Installs the system components the tests and the demo run for real:
# PostgreSQL (server binaries), Mosquitto, nginx, openssl and chromium. Idempotent; apt only when missing.
set -euo pipefail

need=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need+=(postgresql); fi
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then need+=(mosquitto); fi
# Artifact offload (`hub serve --artifact-offload`): tests start their own nginx
# (Debian's has secure_link); see tests/support/nginx.py.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then need+=(nginx); fi
# tests/hostile/test_tls_ciphers.py checks the hub's TLS with `openssl s_client`.
if ! command -v openssl >/dev/null 2>&1; then need+=(openssl); fi

# tests/console drives the console with Playwright and Debian's chromium
# (Playwright's own browser download cannot work here).
if [ ! -x /usr/bin/chromium ]; then need+=(chromium); fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "setup-system: missing ${need[*]}; run as root or install them with apt" >&2
  exit 1
fi
echo "setup-system: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# apt may start nothing here (no init system); the tests start their own servers.
