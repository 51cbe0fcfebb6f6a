#!/usr/bin/env bash
# The page test of `alexnet serve` drives Debian's headless chromium through chromedriver.
# Install both when missing and we may (root with apt-get); otherwise say so. Never fails:
# without a browser that one test skips.
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver with apt-get (for the page test of alexnet serve)"
  apt-get install -y chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get install -y chromium chromium-driver >/dev/null 2>&1; } \
    || true
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "note: no chromium/chromedriver (not root?); the page test of alexnet serve will skip"
  echo "      (as root: apt-get install chromium chromium-driver)"
fi
exit 0
