#!/usr/bin/env bash
# llama.cpp's server with the demo model, on loopback, the way `make demo-local-llm` and `make test-llm`
# run it (one place for its flags):
#   scripts/llm/serve.sh LLAMA_SERVER MODEL PORT
set -euo pipefail
server=$1
model=$2
port=$3
# --chat-template gemma: the model is Gemma 3 270M *base*, whose GGUF carries no chat template.
# --parallel 4, 2048 tokens of context each: four items at once, as LIVEBATCH_BATCH_CONCURRENCY's default,
#   each a prompt of about 300 tokens plus at most LIVEBATCH_OPENAI_MAX_TOKENS (1024) written.
# --n-predict 1024: a token cap for a client that sends none.
# --metrics: /metrics counts the tokens the server wrote, which the LLM tests compare with livebatch's usage.
exec "$server" --model "$model" --host 127.0.0.1 --port "$port" \
    --no-jinja --chat-template gemma --parallel 4 --ctx-size 8192 --no-kv-unified --n-predict 1024 \
    --no-webui --metrics
