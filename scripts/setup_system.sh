#!/usr/bin/env bash
# Installs the system libraries slowfast needs (EGL/OSMesa for headless MuJoCo rendering,
# libusb for pyrealsense2, ffmpeg for video, Chromium for the WebXR page test).
# Does nothing when they are present; needs root (or sudo) only when something is missing.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "setup: missing system packages (${missing[*]}) and no apt-get; install them by hand" >&2; exit 1; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
