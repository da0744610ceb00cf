#!/usr/bin/env bash
# Builds the page's engine: gpu-cnn compiled to wasm32 (web/src/lib.rs, wgpu's WebGPU back end, the same shaders/)
# and its JavaScript bindings, into web/pkg/. Installs what it needs: the wasm32 target (rustup) and the
# wasm-bindgen CLI of the version Cargo.lock pins (cargo install, a few minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown
# The CLI must be the version of the wasm-bindgen crate in Cargo.lock.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "web: installing wasm-bindgen-cli $want (found: ${have:-none})"
  cargo install wasm-bindgen-cli --version "$want"
fi
cargo build -p gpu-cnn-web --release --locked --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir web/pkg target/wasm32-unknown-unknown/release/gpu_cnn_web.wasm
echo "web: built web/pkg ($(du -h web/pkg/gpu_cnn_web_bg.wasm | cut -f1) of wasm)"
