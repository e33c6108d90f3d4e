#!/usr/bin/env bash
# Install the Debian packages the test suite uses (Prometheus server for the integration test,
# chromium for the dashboard's browser tests in tests/web).
# Runs as root with apt-get (CI and the dev machines); elsewhere it says what is missing and the
# tests that need it skip with a visible reason.
set -u
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: cannot install ${need[*]} (need root and apt-get); dependent tests will skip" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "system-deps: apt-get install ${need[*]} failed; dependent tests will skip" >&2
exit 0
