#!/usr/bin/env bash
# Installs the Debian packages edged needs, only those missing, so `make` works on a
# fresh Debian 12 / Pi OS machine. Runs apt-get as root, or through sudo when available.
set -euo pipefail

# pulseaudio + its utilities: the live-audio tests run through a null sink; libasound2-plugins lets
# PortAudio (ALSA) reach PulseAudio as the "pulse" device
packages=(libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins)
# systemd-analyze checks the unit (tests/test_unit.py); a minimal container may lack it
command -v systemd-analyze >/dev/null || packages+=(systemd)
# the unit's system-call filter, applied without systemd (tests/syscall_sandbox.py)
packages+=(python3-seccomp)
# python3 -m venv needs ensurepip, which Debian ships separately
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "edged setup: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
fi
echo "edged setup: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
