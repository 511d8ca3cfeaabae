#!/usr/bin/env bash
# What the browser test of the built book needs (make test-browser, .ci/run):
# headless Chromium and its driver (Debian packages chromium, chromium-driver),
# and npm to install the local MathJax and axe-core of tests/browser/package.json.
# Installed with apt, without questions, where this runs as root on a Debian or
# Ubuntu system and they are missing. Elsewhere it says loudly what is missing and
# how to install it, and exits 0: the browser test is then skipped (and fails
# instead when BNCOURSE_REQUIRE_BROWSER=1, as in .ci/run).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser_tools: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    bar='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
    echo "$bar" >&2
    echo "browser_tools: ${missing[*]} missing, and this is not root with apt-get:" >&2
    echo "  the browser test of the built book will be SKIPPED. To run it, install them:" >&2
    echo "  sudo apt-get install -y ${missing[*]} && make test-browser" >&2
    echo "$bar" >&2
    exit 0
  fi
fi
