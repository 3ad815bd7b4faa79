"""Boot images of the libvirt driver: direct kernel boot from a local image store.

Godwit has no image service of its own (no Glance). What Nova takes from an
image's ``kernel_id``, ``ramdisk_id`` and ``os_command_line`` properties comes
here from one JSON file per image in ``[libvirt] image_store_path``::

    <image_store_path>/<image_ref>.json
    {"kernel": "vmlinuz-6.1", "ramdisk": "initrd.gz",
     "cmdline": "console=ttyS0 quiet"}

Relative paths are relative to the store. Every host keeps its own store
(the same image under the same name), as every Nova host fetches its own copy
from Glance. The guest boots the kernel directly (``<os><kernel>``); its root
disk is the usual blank qcow2.

:func:`boot_files` copies the kernel and ramdisk into the instance directory
as ``kernel`` and ``ramdisk`` (Nova's names) when they are not there yet, so
a running guest never depends on the store's file staying unchanged. A host
that receives a guest (block live migration, cold migration) calls it too and
takes the files from its own store; with shared storage they are already
there.
"""

import json
import os
import shutil

from godwit import exception

KERNEL = "kernel"
RAMDISK = "ramdisk"


def _image_error(host, image_ref, reason):
    return exception.HypervisorError(
        host=host, reason=f"image {image_ref!r}: {reason}")


def load(store, host, image_ref):
    """The image definition {kernel, ramdisk, cmdline} with absolute paths.

    :raises HypervisorError: naming the file to write when the image is unknown
        or its definition is wrong.
    """
    if not image_ref or "/" in image_ref or image_ref.startswith("."):
        raise _image_error(host, image_ref, "not a valid image name (a file name in "
                                            f"the image store {store})")
    path = os.path.join(store, image_ref + ".json")
    try:
        with open(path) as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise _image_error(host, image_ref, f"not in this host's image store: write {path} "
                                            "with its kernel, ramdisk and cmdline "
                                            "([libvirt] image_store_path)") from None
    except ValueError as e:
        raise _image_error(host, image_ref, f"{path} is not valid JSON: {e}") from None
    if not isinstance(spec, dict) or not spec.get("kernel"):
        raise _image_error(host, image_ref, f"{path} names no kernel")
    image = {"cmdline": str(spec.get("cmdline") or "")}
    for key in ("kernel", "ramdisk"):
        value = spec.get(key)
        if not value:
            image[key] = None
            continue
        full = value if os.path.isabs(value) else os.path.join(store, value)
        if not os.path.isfile(full):
            raise _image_error(host, image_ref, f"its {key} {full} (from {path}) does not "
                                                "exist")
        image[key] = full
    return image


def _copy(src, dest):
    tmp = dest + ".part"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)  # never a half-copied kernel under the real name


def boot_files(store, host, instance, instance_dir):
    """{kernel, initrd, cmdline} for the domain XML, or None for a disk-booted instance.

    Copies the image's kernel and ramdisk into ``instance_dir`` if missing.
    """
    image_ref = instance.get("image_ref")
    if not image_ref:
        return None
    image = load(store, host, image_ref)
    kernel = os.path.join(instance_dir, KERNEL)
    ramdisk = os.path.join(instance_dir, RAMDISK) if image["ramdisk"] else None
    if not os.path.isfile(kernel):
        _copy(image["kernel"], kernel)
    if ramdisk and not os.path.isfile(ramdisk):
        _copy(image["ramdisk"], ramdisk)
    return {"kernel": kernel, "initrd": ramdisk, "cmdline": image["cmdline"]}
