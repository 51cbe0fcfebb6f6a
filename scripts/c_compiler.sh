#!/usr/bin/env bash
# The CPU kernels for LRN and max-pooling (src/alexnet/models/*.c) are compiled on first use
# with the system's C compiler. Install gcc when there is none and we may (root with apt-get);
# otherwise say what is lost. Never fails: without a compiler those layers use torch ops.
if command -v "${CC:-cc}" >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing gcc with apt-get (for the CPU kernels)"
  apt-get install -y gcc libc6-dev >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get install -y gcc libc6-dev >/dev/null 2>&1; } \
    || true
fi
command -v gcc >/dev/null 2>&1 \
  || echo "note: no C compiler; LRN and max-pooling will use slower torch ops (apt-get install gcc)"
exit 0
