#!/usr/bin/env bash
# Make sure the host tools that the real VIF, firewall and volume drivers (and
# tests/host) use are installed:
#   openvswitch-switch  ovsdb-tool, ovsdb-server, ovs-vswitchd, ovs-vsctl
#   nftables            nft
#   tgt                 tgtd, tgtadm (userspace iSCSI target)
#   libiscsi-bin        iscsi-inq, iscsi-ls (userspace iSCSI initiator tools)
#   iproute2            ip (network namespaces)
#   iputils-ping        ping (connectivity checks in tests/host)
#   procps              sysctl
#   mount               losetup (loop devices)
#   qemu-utils          qemu-img, and with qemu-block-extra its iSCSI driver: QEMU's own
#   qemu-block-extra    initiator, with which the tests read an iSCSI LUN as a guest would
#   tmux                a real terminal for the godwit client's progress line
#                       (tests/functional/test_client_terminal.py)
# Installs what is missing with apt-get; starts nothing: the tests start their
# own Open vSwitch (userspace datapath, in a run directory they own) and tgtd,
# and stop them again. Safe to run repeatedly; prints one line.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && SUDO=(sudo)
fi

die() { echo "ensure-host-plumbing: ERROR: $*" >&2; exit 1; }

# command -> Debian package that provides it
declare -A PACKAGE_OF=(
    [ovs-vsctl]=openvswitch-switch
    [ovs-vswitchd]=openvswitch-switch
    [ovsdb-server]=openvswitch-switch
    [nft]=nftables
    [tgtd]=tgt
    [tgtadm]=tgt
    [iscsi-inq]=libiscsi-bin
    [ip]=iproute2
    [ping]=iputils-ping
    [sysctl]=procps
    [losetup]=mount
    [qemu-img]=qemu-utils
    [tmux]=tmux
)

missing=()
for cmd in "${!PACKAGE_OF[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 && continue
    pkg=${PACKAGE_OF[$cmd]}
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done

# QEMU's iSCSI block driver is a module of its own package.
if ! compgen -G '/usr/lib/*/qemu/block-iscsi.so' >/dev/null; then
    missing+=(qemu-block-extra)
fi

if ((${#missing[@]} == 0)); then
    echo "host plumbing: all tools present (ovs, nft, tgt, libiscsi, qemu iscsi, ip, ping, losetup, tmux)"
    exit 0
fi

# Package scripts must not start system-wide daemons (openvswitch-switch,
# tgt): the tests run their own. Containers usually ship a policy-rc.d that
# says so; add a temporary one where there is none.
policy=/usr/sbin/policy-rc.d
made_policy=false
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    made_policy=true
fi
cleanup() { if $made_policy; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

log="${TMPDIR:-/tmp}/godwit-ensure-host-plumbing.log"
"${SUDO[@]}" apt-get update -qq </dev/null >"$log" 2>&1 || {
    cat "$log" >&2
    die "apt-get update failed"
}
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >>"$log" 2>&1 || {
    cat "$log" >&2
    die "apt-get install ${missing[*]} failed"
}

for cmd in "${!PACKAGE_OF[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after installing ${missing[*]}"
done
compgen -G '/usr/lib/*/qemu/block-iscsi.so' >/dev/null ||
    die "QEMU's iSCSI block driver still missing after installing ${missing[*]}"
echo "host plumbing: installed ${missing[*]}"
