#!/usr/bin/env bash
# Installs Debian's chromium for the report's browser test
# (report/tests/site_browser.rs renders the generated site headless).
# Idempotent: a quick no-op when /usr/bin/chromium exists. Needs root (apt).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium: present ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium: missing and not root: run this script as root (apt-get install chromium)" >&2
  exit 1
fi
echo "chromium: missing, installing it with apt"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
