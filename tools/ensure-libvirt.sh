#!/usr/bin/env bash
# Make sure what the real-libvirt tests (tests/real/) need is installed:
#   Debian: libvirt-daemon, libvirt-daemon-driver-qemu, qemu-system-x86,
#           qemu-utils, and to build the binding libvirt-dev, pkg-config, gcc,
#           python3-dev
#   .venv:  libvirt-python (the project's `libvirt` extra)
# Installs only what is missing; starts no daemon (the tests start their own
# two libvirtd "hosts", see tests/real/hosts.py). Safe to run repeatedly;
# prints one line.
#
# Environment: VENV (default .venv next to this script's repository).
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils
          libvirt-dev pkg-config gcc python3-dev)

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && SUDO=(sudo)
fi

die() { echo "ensure-libvirt: ERROR: $*" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$p")
done
notes=()
if ((${#missing[@]})); then
    "${SUDO[@]}" apt-get update -qq </dev/null || die "apt-get update failed"
    # No recommends: they pull GUIs, firmware and other hypervisors' drivers.
    # policy-rc.d keeps any init script from starting a system libvirtd.
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null ||
        die "apt-get install ${missing[*]} failed"
    notes+=("installed ${missing[*]}")
fi
for bin in /usr/sbin/libvirtd /usr/bin/qemu-system-x86_64 /usr/bin/qemu-img /usr/bin/unshare; do
    [[ -x $bin ]] || die "$bin missing after installing ${PACKAGES[*]}"
done

# libvirtd's QEMU driver resolves its built-in default user and group before it
# reads qemu.conf (which says root here); libvirt-daemon-system would create
# them, but it also brings init scripts that start a system libvirtd.
for group in libvirt-qemu kvm; do
    getent group "$group" >/dev/null || {
        "${SUDO[@]}" groupadd --system "$group" || die "groupadd $group failed"
        notes+=("group $group created")
    }
done
getent passwd libvirt-qemu >/dev/null || {
    "${SUDO[@]}" useradd --system --no-create-home --home-dir /var/lib/libvirt \
        --shell /usr/sbin/nologin --gid libvirt-qemu --groups kvm libvirt-qemu ||
        die "useradd libvirt-qemu failed"
    notes+=("user libvirt-qemu created")
}

[[ -x $VENV/bin/python ]] || die "$VENV/bin/python not found; run 'make venv' first"
if ! "$VENV/bin/python" -c 'import libvirt' 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[libvirt]" </dev/null ||
        die "pip install libvirt-python (the 'libvirt' extra) failed"
    "$VENV/bin/python" -c 'import libvirt' || die "libvirt-python installed but does not import"
    notes+=("libvirt-python installed")
fi

version=$("$VENV/bin/python" -c 'import libvirt; print(libvirt.getVersion())')
extra=""
if ((${#notes[@]})); then
    extra=" ($(printf '%s; ' "${notes[@]}")" && extra="${extra%; })"
fi
echo "libvirt: ready (library $version, $(/usr/bin/qemu-system-x86_64 --version | head -n 1))$extra"
