"""A real Linux guest for the network tests: Debian's cloud kernel and a busybox initramfs.

The guest boots the kernel directly (no disk, no bootloader), loads the
virtio NIC modules, takes its address from the ``guestip=`` kernel argument,
announces itself with a gratuitous ARP, prints :data:`READY` on the serial
console and sleeps. The kernel answers ICMP echo by itself, so the guest
answers ping for as long as it runs.

The pieces come from Debian's archive (``apt-get download``, unpacked with
``dpkg-deb -x``: installing the kernel package would run the host's
initramfs and bootloader hooks) and are built once into
``GODWIT_GUEST_CACHE`` (default /var/tmp/godwit-guest-kernel); a later run
whose cache holds the same kernel version and recipe reuses them. A second
disk (``/dev/vdb``, a volume) has its first bytes printed on the console as
``VOLUME <text>``. ../shared notes:
ping-continuity.md has the recipe this follows.
"""

import glob
import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile

CACHE = os.environ.get("GODWIT_GUEST_CACHE", "/var/tmp/godwit-guest-kernel")
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
READY = "GODWIT-GUEST-READY"
#: What the NIC needs; their dependencies are found in the modules themselves.
WANTED_MODULES = ("virtio_pci", "virtio_net", "virtio_blk")

INIT = """#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
for m in {modules}; do $B insmod /modules/$m.ko; done
IP=
for arg in $($B cat /proc/cmdline); do
  case "$arg" in guestip=*) IP="${{arg#guestip=}}" ;; esac
done
$B ip link set lo up
n=0
while ! $B ip link show eth0 >/dev/null 2>&1 && [ $n -lt 100 ]; do $B sleep 0.1; n=$((n+1)); done
$B ip addr add "$IP" dev eth0
$B ip link set eth0 up
$B arping -U -c 1 -I eth0 "${{IP%/*}}" >/dev/null 2>&1
# A second disk (vdb, a volume) shows its first bytes on the console.
n=0
while [ ! -b /dev/vdb ] && [ $n -lt 20 ]; do $B sleep 0.1; n=$((n+1)); done
if [ -b /dev/vdb ]; then
  echo "VOLUME $($B dd if=/dev/vdb bs=64 count=1 2>/dev/null | $B tr -cd 'A-Za-z0-9-')" > /dev/ttyS0
fi
echo "{ready} $IP" > /dev/ttyS0
while true; do $B sleep 3600; done
"""


class GuestBuildError(Exception):
    """The guest kernel could not be fetched or built; the message says why."""


def _run(*cmd, cwd=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GuestBuildError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                              f"{(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc.stdout


def _kernel_package():
    """The versioned package the cloud kernel meta-package depends on."""
    out = _run("apt-cache", "depends", KERNEL_META_PACKAGE)
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split()[-1]
    raise GuestBuildError(f"apt-cache knows no kernel behind {KERNEL_META_PACKAGE}; "
                          "run apt-get update")


def _download(packages, where):
    try:
        _run("apt-get", "download", *packages, cwd=where)
    except GuestBuildError:
        _run("apt-get", "update", "-qq")
        _run("apt-get", "download", *packages, cwd=where)


def _module_depends(path):
    """The ``depends=`` list from a module's .modinfo strings."""
    with open(path, "rb") as f:
        data = f.read()
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    end = data.index(b"\0", at + 1)
    value = data[at + len(b"\0depends="):end].decode()
    return [d for d in value.split(",") if d]


def _module_order(modules_dir, wanted):
    """Module files of ``wanted`` and their dependencies, dependencies first."""
    index = {}
    for path in glob.glob(os.path.join(modules_dir, "**", "*.ko"), recursive=True):
        index[os.path.basename(path)[:-3].replace("-", "_")] = path
    order, seen = [], set()

    def visit(name):
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        if name not in index:
            raise GuestBuildError(f"module {name} is not in {modules_dir} (built in?)")
        for dep in _module_depends(index[name]):
            visit(dep)
        order.append((name, index[name]))

    for name in wanted:
        visit(name)
    return order


def _cpio_entry(name, mode, data, ino):
    """One "newc" cpio record: header, name, data, each padded to 4 bytes."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    head = b"070701" + b"".join(b"%08X" % v for v in fields) + encoded
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def _pack(root, out):
    """The gzipped cpio "newc" archive of ``root`` that the kernel unpacks as its
    initramfs (written here: cpio is not on every host, and the format is simple)."""
    records, ino = [], 1
    for base, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(base, root)
        if rel != ".":
            records.append(_cpio_entry(rel, 0o040755, b"", ino))
            ino += 1
        for name in sorted(files):
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                data = f.read()
            mode = 0o100000 | (os.stat(path).st_mode & 0o777)
            records.append(_cpio_entry(os.path.normpath(os.path.join(rel, name)), mode,
                                       data, ino))
            ino += 1
    records.append(_cpio_entry("TRAILER!!!", 0, b"", 0))
    with gzip.open(out, "wb", compresslevel=6) as f:
        f.write(b"".join(records))


def build(cache=CACHE):
    """(kernel path, initramfs path), built into ``cache`` unless already there."""
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if not shutil.which(tool):
            raise GuestBuildError(f"{tool} is missing: the guest kernel comes from "
                                  "Debian's archive")
    package = _kernel_package()
    kernel = os.path.join(cache, "vmlinuz")
    initrd = os.path.join(cache, "initrd.gz")
    stamp = os.path.join(cache, "package")
    recipe = package + " " + hashlib.sha256(
        (INIT + " ".join(WANTED_MODULES)).encode()).hexdigest()[:16]
    if os.path.isfile(kernel) and os.path.isfile(initrd) and os.path.isfile(stamp):
        with open(stamp) as f:
            if f.read().strip() == recipe:
                return kernel, initrd
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="godwit-guest-") as work:
        debs = os.path.join(work, "debs")
        unpacked = os.path.join(work, "x")
        os.makedirs(debs)
        _download([package, "busybox-static"], debs)
        for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
            _run("dpkg-deb", "-x", deb, unpacked)
        vmlinuz = glob.glob(os.path.join(unpacked, "boot", "vmlinuz-*"))
        module_dirs = glob.glob(os.path.join(unpacked, "lib", "modules", "*"))
        if not vmlinuz or not module_dirs:
            raise GuestBuildError(f"{package} holds no vmlinuz or modules")
        root = os.path.join(work, "root")
        for d in ("bin", "proc", "sys", "dev", "modules"):
            os.makedirs(os.path.join(root, d))
        shutil.copy(os.path.join(unpacked, "bin", "busybox"), os.path.join(root, "bin"))
        order = _module_order(module_dirs[0], WANTED_MODULES)
        for name, path in order:
            shutil.copy(path, os.path.join(root, "modules", name + ".ko"))
        with open(os.path.join(root, "init"), "w") as f:
            f.write(INIT.format(modules=" ".join(n for n, _ in order), ready=READY))
        os.chmod(os.path.join(root, "init"), 0o755)
        _pack(root, initrd + ".part")
        shutil.copy(vmlinuz[0], kernel + ".part")
        os.replace(kernel + ".part", kernel)
        os.replace(initrd + ".part", initrd)
        with open(stamp, "w") as f:
            f.write(recipe + "\n")
    return kernel, initrd
