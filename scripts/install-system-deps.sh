#!/usr/bin/env bash
# Installs the Debian packages the tests need (headless napari under Xvfb) when any is missing.
set -euo pipefail
packages=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-randr0
          libxcb-render-util0 libxcb-shape0 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1
          libglib2.0-0 libfontconfig1 libdbus-1-3 libtcmalloc-minimal4)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
