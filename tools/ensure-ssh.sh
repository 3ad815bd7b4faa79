#!/usr/bin/env bash
# Make sure what the disk-transfer tests (tests/transfer/) need is installed:
#   Debian: openssh-server (sshd, ssh-keygen), openssh-client (ssh, scp,
#           ssh-keyscan), rsync, qemu-utils (qemu-img, qemu-io)
# Installs only what is missing (checked with `dpkg -s`); starts no daemon
# (the tests start their own sshd on 127.0.0.1 with their own host keys and
# configuration, see tests/transfer/conftest.py). Safe to run repeatedly;
# prints one line.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
PACKAGES=(openssh-server openssh-client rsync qemu-utils)

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && SUDO=(sudo)
fi

die() { echo "ensure-ssh: ERROR: $*" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done

note="already installed"
if ((${#missing[@]})); then
    log="$(mktemp "${TMPDIR:-/tmp}/ensure-ssh.XXXXXX")"
    "${SUDO[@]}" apt-get update -qq </dev/null >"$log" 2>&1 ||
        { cat "$log" >&2; die "apt-get update failed"; }
    # RUNLEVEL=1 keeps the package's init script from starting a system sshd
    # on port 22 (invoke-rc.d skips the start); the tests run their own sshd.
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >>"$log" 2>&1 ||
        { cat "$log" >&2; die "apt-get install ${missing[*]} failed"; }
    rm -f "$log"
    note="installed ${missing[*]}"
fi

for bin in /usr/sbin/sshd /usr/bin/ssh /usr/bin/scp /usr/bin/ssh-keygen /usr/bin/ssh-keyscan \
           /usr/bin/rsync /usr/bin/qemu-img /usr/bin/qemu-io; do
    [[ -x $bin ]] || die "$bin missing after installing ${PACKAGES[*]}"
done
# sshd refuses to start without its privilege-separation directory.
[[ -d /run/sshd ]] || "${SUDO[@]}" mkdir -p /run/sshd

echo "ensure-ssh: openssh-server, rsync, qemu-utils: $note"
