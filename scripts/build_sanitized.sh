#!/usr/bin/env bash
# Build lstmkit._engine with AddressSanitizer + UBSan and run every test that reaches native code under it.
#   scripts/build_sanitized.sh [test files or pytest args...]   (default: the tests named in NATIVE_TESTS)
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
# every test file that calls the native engine (sequence and cell kernels, streams, ISA paths, variants,
# quantised models, the torch operators, the fuzz targets at the native boundary, threads)
NATIVE_TESTS=()
for f in test_engine_vs_ref test_engine_isa test_simd_functions test_stream test_layers test_layers_variants test_engine_variants test_quantize test_workspaces \
         test_torch_ops test_torch_parity test_torch_variants test_fuzz_targets test_concurrency; do
  [[ -f tests/$f.py ]] && NATIVE_TESTS+=("tests/$f.py")
done
LIBASAN=$("${CXX:-c++}" -print-file-name=libasan.so)
# libstdc++ preloaded too: python is not linked against it, and ASan must find the real __cxa_throw
# at start-up to intercept C++ exceptions (the glue throws them for bad arguments).
LIBSTDCXX=$("${CXX:-c++}" -print-file-name=libstdc++.so.6)
LD_PRELOAD="$LIBASAN $LIBSTDCXX" ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  PYTHONPATH=build/asan/pkg "$PY" -m pytest -q -p no:cacheprovider -m "not slow" "${@:-${NATIVE_TESTS[@]}}"
