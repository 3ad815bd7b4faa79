"""A guest stand-in on a tap: answers ARP and ICMP echo for one address.

Attaches to an existing (persistent) tap the way QEMU does (/dev/net/tun,
TUNSETIFF with IFF_TAP|IFF_NO_PI) and plays a guest NIC with the given MAC and
IPv4 address, so a test can ping "the guest" through the VIF a driver plugged.
Run it as a process (``python tap_guest.py <tap> <mac> <ip>``, under ``ip netns
exec`` for a namespace); it prints "ready" once attached and runs until killed.
"""

import fcntl
import os
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def answer(frame, mac, ip):
    """The reply to ``frame`` (bytes) or None."""
    if len(frame) < 14:
        return None
    dst, src, ethertype = frame[0:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    if ethertype == 0x0806 and len(frame) >= 42:
        arp = frame[14:42]
        op, sha, spa, tpa = struct.unpack("!H", arp[6:8])[0], arp[8:14], arp[14:18], arp[24:28]
        if op == 1 and tpa == ip:
            reply = arp[0:6] + struct.pack("!H", 2) + mac + ip + sha + spa
            return src + mac + frame[12:14] + reply
    if ethertype == 0x0800 and dst == mac and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        header, payload = bytearray(frame[14:14 + ihl]), frame[14 + ihl:]
        total_len = struct.unpack("!H", header[2:4])[0]
        payload = payload[:total_len - ihl]
        if header[9] == 1 and bytes(header[16:20]) == ip and payload and payload[0] == 8:
            header[12:16], header[16:20] = header[16:20], header[12:16]
            header[8] = 64
            header[10:12] = b"\0\0"
            header[10:12] = struct.pack("!H", checksum(bytes(header)))
            icmp = bytearray(payload)
            icmp[0] = 0
            icmp[2:4] = b"\0\0"
            icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
            return src + mac + frame[12:14] + bytes(header) + bytes(icmp)
    return None


def main(tap, mac_text, ip_text):
    mac = bytes.fromhex(mac_text.replace(":", ""))
    ip = socket.inet_aton(ip_text)
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
    print("ready", flush=True)
    while True:
        reply = answer(os.read(fd, 65536), mac, ip)
        if reply is not None:
            os.write(fd, reply)


if __name__ == "__main__":
    main(*sys.argv[1:4])
