"""A small FLAC decoder in pure Python + numpy, used by audio.py only when no library on the golden machine
can read FLAC (torchaudio >= 2.9 reads through torchcodec, soundfile is not installed there).

FLAC is lossless: a correct decoder gives the exact integer samples that the encoder was given, so this
one is checked by comparing with another decoder wherever one exists (audio.py does that when it can, and
tools/goldens/media/README-audio.md says how it was checked against sox). It handles what libFLAC writes:
STREAMINFO, CONSTANT / VERBATIM / FIXED / LPC subframes, Rice partitions (4- and 5-bit parameters, escapes),
wasted bits and the four stereo decorrelation modes. Frame CRCs are not checked (the data file is
committed and its sha256 is recorded by the caller).
"""

import numpy as np


class _Bits:
    def __init__(self, data, pos=0):
        self.data = data
        self.bitpos = pos * 8

    def read(self, n):
        v = 0
        for _ in range(n):
            byte = self.data[self.bitpos >> 3]
            v = (v << 1) | ((byte >> (7 - (self.bitpos & 7))) & 1)
            self.bitpos += 1
        return v

    def read_signed(self, n):
        if n == 0:
            return 0
        v = self.read(n)
        return v - (1 << n) if v & (1 << (n - 1)) else v

    def unary(self):
        n = 0
        while self.read(1) == 0:
            n += 1
        return n

    def align(self):
        self.bitpos = (self.bitpos + 7) & ~7

    def utf8_number(self):
        first = self.read(8)
        if first < 0x80:
            return first
        n_extra = 0
        mask = 0x40
        while first & mask:
            n_extra += 1
            mask >>= 1
        v = first & (mask - 1)
        for _ in range(n_extra):
            v = (v << 6) | (self.read(8) & 0x3F)
        return v


def _residual(bits, block_size, order):
    method = bits.read(2)
    param_bits = 4 if method == 0 else 5
    escape = (1 << param_bits) - 1
    partition_order = bits.read(4)
    n_parts = 1 << partition_order
    out = []
    for p in range(n_parts):
        n = (block_size >> partition_order) - (order if p == 0 else 0)
        k = bits.read(param_bits)
        if k == escape:
            width = bits.read(5)
            out.extend(bits.read_signed(width) for _ in range(n))
            continue
        for _ in range(n):
            q = bits.unary()
            u = (q << k) | bits.read(k)
            out.append((u >> 1) ^ -(u & 1))
    return out


_FIXED = {0: [], 1: [1], 2: [2, -1], 3: [3, -3, 1], 4: [4, -6, 4, -1]}


def _subframe(bits, block_size, bps):
    if bits.read(1) != 0:
        raise ValueError("FLAC subframe padding bit set")
    kind = bits.read(6)
    wasted = 0
    if bits.read(1):
        wasted = bits.unary() + 1
        bps -= wasted
    if kind == 0:
        s = [bits.read_signed(bps)] * block_size
    elif kind == 1:
        s = [bits.read_signed(bps) for _ in range(block_size)]
    elif 8 <= kind <= 12:
        order = kind - 8
        s = [bits.read_signed(bps) for _ in range(order)]
        res = _residual(bits, block_size, order)
        coefs = _FIXED[order]
        for r in res:
            s.append(r + sum(c * s[-1 - j] for j, c in enumerate(coefs)))
    elif kind >= 32:
        order = kind - 31
        s = [bits.read_signed(bps) for _ in range(order)]
        precision = bits.read(4) + 1
        shift = bits.read_signed(5)
        coefs = [bits.read_signed(precision) for _ in range(order)]
        res = _residual(bits, block_size, order)
        for r in res:
            acc = sum(c * s[-1 - j] for j, c in enumerate(coefs))
            s.append(r + (acc >> shift))
    else:
        raise ValueError(f"reserved FLAC subframe type {kind}")
    return [v << wasted for v in s]


def decode_flac(path):
    """Returns (int samples [n, channels] as int64, sample_rate, bits_per_sample)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"fLaC":
        raise ValueError(f"{path}: not a FLAC stream")
    pos = 4
    rate = channels = bps = total = None
    while True:
        hdr = data[pos]
        length = int.from_bytes(data[pos + 1:pos + 4], "big")
        if hdr & 0x7F == 0:
            b = _Bits(data, pos + 4 + 10)
            rate = b.read(20)
            channels = b.read(3) + 1
            bps = b.read(5) + 1
            total = b.read(36)
        pos += 4 + length
        if hdr & 0x80:
            break
    chans = [[] for _ in range(channels)]
    bits = _Bits(data, pos)
    block_sizes = {1: 192, 2: 576, 3: 1152, 4: 2304, 5: 4608, 8: 256, 9: 512, 10: 1024, 11: 2048,
                   12: 4096, 13: 8192, 14: 16384, 15: 32768}
    while (bits.bitpos >> 3) < len(data) - 2 and len(chans[0]) < total:
        if bits.read(14) != 0x3FFE:
            raise ValueError(f"{path}: lost FLAC frame sync at byte {bits.bitpos >> 3}")
        bits.read(2)
        bs_code = bits.read(4)
        rate_code = bits.read(4)
        ch_code = bits.read(4)
        size_code = bits.read(3)
        bits.read(1)
        bits.utf8_number()
        if bs_code == 6:
            block = bits.read(8) + 1
        elif bs_code == 7:
            block = bits.read(16) + 1
        else:
            block = block_sizes[bs_code]
        if rate_code == 12:
            bits.read(8)
        elif rate_code in (13, 14):
            bits.read(16)
        frame_bps = {0: bps, 1: 8, 2: 12, 4: 16, 5: 20, 6: 24, 7: 32}[size_code]
        bits.read(8)  # header CRC-8
        if ch_code < 8:
            subs = [_subframe(bits, block, frame_bps) for _ in range(ch_code + 1)]
        else:
            # Side channel carries one extra bit.
            widths = {8: (frame_bps, frame_bps + 1), 9: (frame_bps + 1, frame_bps), 10: (frame_bps, frame_bps + 1)}
            a = _subframe(bits, block, widths[ch_code][0])
            b = _subframe(bits, block, widths[ch_code][1])
            if ch_code == 8:  # left/side
                subs = [a, [x - y for x, y in zip(a, b)]]
            elif ch_code == 9:  # side/right
                subs = [[x + y for x, y in zip(a, b)], b]
            else:  # mid/side
                left, right = [], []
                for m, s in zip(a, b):
                    m = (m << 1) | (s & 1)
                    left.append((m + s) >> 1)
                    right.append((m - s) >> 1)
                subs = [left, right]
        for c in range(channels):
            chans[c].extend(subs[c])
        bits.align()
        bits.read(16)  # frame CRC-16
    out = np.array(chans, dtype=np.int64).T[:total]
    return out, rate, bps
