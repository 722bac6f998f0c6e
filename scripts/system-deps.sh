#!/usr/bin/env bash
# System packages the tests need that pip cannot provide: redis-server (tests start their own), promtool,
# and Debian's chromium (+ chromedriver) for the page's browser tests (Playwright drives /usr/bin/chromium).
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)  # promtool checks deploy/prometheus/*.yml
[ -x /usr/bin/chromium ] || missing+=(chromium)  # tests/integration/test_ui_browser.py
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
