#!/usr/bin/env bash
# make demo-local-llm: llama.cpp's server with the demo model on a free loopback port, then `livebatch demo`
# with the openai provider pointed at it; Ctrl-C stops both.
#   scripts/llm/demo.sh LLAMA_SERVER MODEL
# LIVEBATCH_* variables set by the caller win over the values below; COUNT is the number of items.
set -euo pipefail
server=$1
model=$2
here=$(dirname "$0")
log=${LLM_LOG:-.cache/llm/llama-server.log}
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

started=$(date +%s%N)
"$here/serve.sh" "$server" "$model" "$port" >"$log" 2>&1 &
llm=$!
trap 'kill "$llm" 2>/dev/null || true; wait "$llm" 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
    if ! kill -0 "$llm" 2>/dev/null; then
        echo "llama-server did not start; the end of $log:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "llama-server is up on 127.0.0.1:$port, model loaded in $(( ($(date +%s%N) - started) / 1000000 )) ms (log: $log)"

# A CPU server writes an item in 10-70 s, four at a time (its --parallel): timeouts to match, and a data
# directory of its own, so that batches of the offline demo do not resume against the model.
export LIVEBATCH_PROVIDER=openai
export LIVEBATCH_OPENAI_BASE_URL="http://127.0.0.1:$port/v1"
export LIVEBATCH_OPENAI_MODEL=${LIVEBATCH_OPENAI_MODEL:-gemma-3-270m}
export LIVEBATCH_OPENAI_TIMEOUT_S=${LIVEBATCH_OPENAI_TIMEOUT_S:-120}
export LIVEBATCH_GENERATION_TIMEOUT_S=${LIVEBATCH_GENERATION_TIMEOUT_S:-150}
export LIVEBATCH_BATCH_CONCURRENCY=${LIVEBATCH_BATCH_CONCURRENCY:-4}
export LIVEBATCH_DATA_DIR=${LIVEBATCH_DATA_DIR:-.livebatch/local-llm}
.venv/bin/livebatch demo --count "${COUNT:-10}"
