#!/usr/bin/env bash
# `make install`: edged as a system service on Debian / Raspberry Pi OS.
#
# Creates the `edged` user (primary group audio), a virtualenv in /opt/edged (a link to the
# newest /opt/edged-<time>), /etc/edged/edged.yaml (kept if it exists),
# /etc/edged/openai_api_key (root-only; systemd hands it to the service as a credential, so
# the service user never reads it directly) and the unit. It does not start the service: put the key in first, then
# `systemctl enable --now edged`.
#
# DESTDIR=DIR stages the files under DIR instead (for packagers; the tests use it) and then
# skips what only makes sense on the machine itself: packages, the user, systemctl.
# EDGED_NO_VENV=1 skips the virtualenv (a package that ships its own Python environment).
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT="${DESTDIR:-}"
# the system's interpreter, never one under a user's home (the service user could not run it)
PYTHON="${PYTHON:-/usr/bin/python3}"
PREFIX=/opt/edged
ETC="$ROOT/etc/edged"
UNIT_DIR="$ROOT/etc/systemd/system"

say() { printf 'install: %s\n' "$*"; }

if [[ -z "$ROOT" && $(id -u) -ne 0 ]]; then
    echo "install: run as root (sudo make install)" >&2
    exit 1
fi

if [[ -z "$ROOT" ]]; then
    # what the service needs at run time; the test stack (PulseAudio, seccomp, ...) stays out
    need=()
    dpkg-query -W -f='${Status}' libportaudio2 2>/dev/null | grep -q 'install ok installed' || need+=(libportaudio2)
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
    if [[ ${#need[@]} -gt 0 ]]; then
        say "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
fi

if [[ "${EDGED_NO_VENV:-0}" != 1 ]]; then
    # a new virtualenv beside the running one, switched to in one step: an upgrade that
    # fails half-way (no network) leaves the service on the old one, untouched
    release="$PREFIX-$(date +%Y%m%d%H%M%S)"
    say "virtualenv in $release"
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    # build from a copy: pip would leave root-owned build files in the checkout
    cp -r pyproject.toml README.md edged "$src"/
    "$PYTHON" -m venv "$ROOT$release"
    "$ROOT$release/bin/python" -m pip install -q --upgrade pip
    "$ROOT$release/bin/python" -m pip install -q "$src"
    install -m 0644 README.md "$ROOT$release/README.md"
    if [[ -d "$ROOT$PREFIX" && ! -L "$ROOT$PREFIX" ]]; then
        mv "$ROOT$PREFIX" "$ROOT$PREFIX-old"  # a directory from an older install layout
    fi
    ln -sfn "$(basename "$release")" "$ROOT$PREFIX.next"
    mv -T "$ROOT$PREFIX.next" "$ROOT$PREFIX"
    for old in "$ROOT$PREFIX"-*; do
        [[ "$old" == "$ROOT$release" ]] || rm -rf "$old"
    done
fi
if [[ -z "$ROOT" ]]; then
    ln -sf "$PREFIX/bin/edged" /usr/local/bin/edged  # `edged devices`, `edged monitor` for the admin
fi

if [[ -z "$ROOT" ]] && ! getent passwd edged >/dev/null; then
    say "user edged (group audio)"
    useradd --system --gid audio --home-dir /var/lib/edged --no-create-home \
        --shell /usr/sbin/nologin --comment "edged voice daemon" edged
fi

install -d -m 0755 "$ETC"
if [[ -e "$ETC/edged.yaml" ]]; then
    say "keeping $ETC/edged.yaml (the shipped defaults are in configs/default.yaml)"
else
    install -m 0644 configs/default.yaml "$ETC/edged.yaml"
    say "wrote $ETC/edged.yaml"
fi

KEY="$ETC/openai_api_key"
if [[ ! -e "$KEY" ]]; then
    (umask 077 && : >"$KEY")
    if [[ -n "${OPENAI_API_KEY:-}" ]]; then
        printf '%s\n' "$OPENAI_API_KEY" >"$KEY"
        say "wrote the key from \$OPENAI_API_KEY to $KEY"
    else
        say "put the OpenAI API key in $KEY (one line; the file stays root-only)"
    fi
fi
chmod 0600 "$KEY"
[[ -n "$ROOT" ]] || chown root:root "$KEY"

install -D -m 0644 systemd/edged.service "$UNIT_DIR/edged.service"
say "unit $UNIT_DIR/edged.service"
if [[ -z "$ROOT" && -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl try-restart edged  # an upgrade: the running service moves to the new release
    say "start it with: systemctl enable --now edged; follow it with: journalctl -fu edged"
fi
