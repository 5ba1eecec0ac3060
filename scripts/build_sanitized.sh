#!/usr/bin/env bash
# Build lstmkit._engine with AddressSanitizer + UBSan and run the engine tests against it.
#   scripts/build_sanitized.sh [pytest args...]
# The sanitized module goes to build/asan/pkg/lstmkit (a copy of src/lstmkit), so the dev build in
# src/lstmkit is left alone. Python itself is not sanitized, so libasan is preloaded and leak
# checking is off (CPython's own allocations would drown the report).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLSTMKIT_SANITIZE=ON \
  -DPython_EXECUTABLE="$PY" -Dnanobind_DIR="$("$PY" -m nanobind --cmake_dir)" >/dev/null
cmake --build build/asan
rm -rf build/asan/pkg && mkdir -p build/asan/pkg
cp -r src/lstmkit build/asan/pkg/
rm -f build/asan/pkg/lstmkit/_engine*.so
cp build/asan/_engine*.so build/asan/pkg/lstmkit/
LIBASAN=$("${CXX:-c++}" -print-file-name=libasan.so)
# libstdc++ preloaded too: python is not linked against it, and ASan must find the real __cxa_throw
# at start-up to intercept C++ exceptions (the glue throws them for bad arguments).
LIBSTDCXX=$("${CXX:-c++}" -print-file-name=libstdc++.so.6)
LD_PRELOAD="$LIBASAN $LIBSTDCXX" ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  PYTHONPATH=build/asan/pkg "$PY" -m pytest tests/test_engine_vs_ref.py tests/test_quantize.py -q -p no:cacheprovider "$@"
