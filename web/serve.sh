#!/usr/bin/env bash
# Builds the page (web/build.sh) and serves the repository on http://127.0.0.1:PORT (default 8000): the page is
# /web/, and it fetches the project's MNIST from /data/mnist/. WebGPU needs a secure context: localhost is one.
set -euo pipefail
cd "$(dirname "$0")/.."
web/build.sh
port="${1:-8000}"
echo "web: open http://127.0.0.1:$port/web/ in a browser with WebGPU (Ctrl-C stops the server)"
echo "web: e.g. http://127.0.0.1:$port/web/?run=train&epochs=1 runs a command on load"
exec python3 -m http.server "$port" --bind 127.0.0.1
