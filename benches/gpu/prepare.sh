#!/bin/bash
# Prepares, on this machine, what benches/gpu/run.sh needs on a lent NVIDIA GPU host (no Rust, no network there):
# the Vulkan and EGL loaders in .gl/, a stripped release binary of this checkout in .device/gpu-cnn and, to measure
# the engine as it landed beside the change, one of BASE (a commit; default below) in .device/gpu-cnn-base. Both
# folders are ignored by git (.git/info/exclude) and travel with the call as `carry`.
#
#   bash benches/gpu/prepare.sh [BASE]
#   then run, on the device: carry [".gl", ".device"], command "bash benches/gpu/run.sh", timeout_s 600
set -eu
cd "$(git rev-parse --show-toplevel)"
BASE=${1:-e997aea} # the engine before issue 23's kernel sizing
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")" .gl .device
for d in /.gl/ /.device/; do grep -qxF "$d" "$exclude" 2>/dev/null || echo "$d" >>"$exclude"; done

# The loaders (the host's driver has no libvulkan / libEGL of its own): the project's shared copies where they are,
# else Debian's packages.
if ls ../shared/device/gl/*.deb >/dev/null 2>&1; then
  cp ../shared/device/gl/*.deb .gl/
else
  lists=$(mktemp -d)
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
  mkdir -p "$lists/partial" && apt-get $o update >/dev/null
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

# Stripped: unstripped the binary is about 70 MB, over what a call may carry.
cargo build --release
strip -o .device/gpu-cnn target/release/gpu-cnn
base=$(mktemp -d)/gpu-cnn-base
git worktree add --detach "$base" "$BASE"
(cd "$base" && cargo build --release)
strip -o .device/gpu-cnn-base "$base/target/release/gpu-cnn"
git worktree remove --force "$base"
ls -la .gl .device
echo "ready: run with carry [\".gl\", \".device\"] and command \"bash benches/gpu/run.sh\", timeout_s 600"
