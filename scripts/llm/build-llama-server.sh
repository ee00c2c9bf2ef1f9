#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` once, from the llama.cpp sources vendored in the llama-cpp-python
# source distribution: PyPI is where this project's machines get code, and that sdist pins a llama.cpp.
#   scripts/llm/build-llama-server.sh VERSION DEST      (make llm runs it; about 6 min on 2 cores)
# Leaves DEST/bin/llama-server and nothing else; the sources and the build tree are removed afterwards.
set -euo pipefail
version=$1
dest=$2
pip=${PIP:-pip}
jobs=${JOBS:-2}

if ! command -v cmake >/dev/null || ! command -v c++ >/dev/null; then
    echo "installing Debian's cmake and g++"
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq cmake g++ >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/llama-server.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$pip" download --quiet --no-deps --no-binary :all: --dest "$work" "llama-cpp-python==$version"
tar -xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work" "llama_cpp_python-$version/vendor/llama.cpp"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"

# No web UI (it would be downloaded or built with npm), no HTTPS, one static binary; curl is gone from this
# llama.cpp (LLAMA_CURL is deprecated), cpp-httplib is built in.
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >"$work/configure.log" 2>&1 \
    || { cat "$work/configure.log"; exit 1; }
started=$(date +%s)
cmake --build "$work/build" --target llama-server -j "$jobs" >"$work/build.log" 2>&1 \
    || { tail -50 "$work/build.log"; exit 1; }
install -D -m 755 "$work/build/bin/llama-server" "$dest/bin/llama-server"
echo "built $dest/bin/llama-server (llama-cpp-python $version) in $(( $(date +%s) - started ))s"
