#!/usr/bin/env python3
"""Rewrite SIPp's dtmf_2833_<d>.pcap so the RTP payload type is <pt> (PJSIP offers
telephone-event as PT 120, the shipped pcaps use 101). UDP checksum is zeroed."""
import struct, sys
src, dst, pt = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = bytearray(open(src, "rb").read()); off = 24
while off < len(d):
    il = struct.unpack("<I", d[off+8:off+12])[0]; p = off + 16
    ihl = (d[p+14] & 15) * 4; udp = p + 14 + ihl
    d[udp+6:udp+8] = b"\0\0"                       # no UDP checksum
    d[udp+9] = (d[udp+9] & 0x80) | pt              # RTP marker|PT
    off = p + il
open(dst, "wb").write(d)
