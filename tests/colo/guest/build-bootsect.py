#!/usr/bin/env python3
"""Write the tiny x86 boot-sector guest used by the COLO tests.

Same behaviour as the guest of QEMU's migration qtests (a-b-bootblock.S), but
hand-assembled here from our own listing:

  * switch to 32-bit protected mode with flat 4 GiB code/data segments;
  * write 'A' to the serial port (0x3f8) once;
  * zero the first byte of every 4 KiB page in [1 MiB, 100 MiB);
  * loop forever incrementing that byte in every page, and write 'B' to the
    serial port after every PASSES full passes (--passes, default 1).

So the guest keeps dirtying 99 MiB worth of pages (25344 pages), and its
serial output shows it is running.  Needs at least 100 MiB of guest RAM
(e.g. -m 128).  Consistency check a test can do after migration/failover: in
a paused guest, all tested pages hold the same byte, or two consecutive values (mod 256)
(the pass that was in progress), the pass boundary being a single page.

Output: a raw disk image (MBR in sector 0, padded to 1 MiB) for
-drive file=...,format=raw; default path
${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}/guest/bootsect.img.

Usage: build-bootsect.py [--passes N] [-o PATH]
"""

import argparse
import os
import struct
import sys

LOAD_ADDR = 0x7C00          # BIOS loads the MBR here and jumps to it in real mode
MEM_START = 1 * 1024 * 1024
MEM_END = 100 * 1024 * 1024
PAGE = 4096
SERIAL = 0x3F8
CODE_SEL = 0x08             # GDT entry 1
DATA_SEL = 0x10             # GDT entry 2
IMAGE_SIZE = 1024 * 1024


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


class Asm:
    """Just enough of an assembler: raw bytes, labels, and fix-ups for
    absolute addresses and 8-bit relative jumps, resolved in finish()."""

    def __init__(self, origin):
        self.origin = origin
        self.code = bytearray()
        self.labels = {}
        self.fixups = []    # (offset in code, kind, label)

    def here(self):
        return self.origin + len(self.code)

    def label(self, name):
        self.labels[name] = self.here()

    def emit(self, *parts):
        for p in parts:
            self.code += bytes(p) if isinstance(p, (list, tuple)) else p

    def abs16(self, name):
        self.fixups.append((len(self.code), "abs16", name))
        self.code += b"\0\0"

    def abs32(self, name):
        self.fixups.append((len(self.code), "abs32", name))
        self.code += b"\0\0\0\0"

    def rel8(self, name):
        # Displacement is relative to the end of this 1-byte field, which is
        # the end of the jump instruction for every short jump we use.
        self.fixups.append((len(self.code), "rel8", name))
        self.code += b"\0"

    def align(self, n):
        while len(self.code) % n:
            self.code += b"\x90"    # nop, never executed

    def finish(self):
        for off, kind, name in self.fixups:
            target = self.labels[name]
            if kind == "abs16":
                self.code[off:off + 2] = u16(target)
            elif kind == "abs32":
                self.code[off:off + 4] = u32(target)
            else:
                disp = target - (self.origin + off + 1)
                if not -128 <= disp <= 127:
                    raise ValueError("short jump to %s out of range" % name)
                self.code[off] = disp & 0xFF
        return bytes(self.code)


def assemble(passes):
    a = Asm(LOAD_ADDR)

    # ---- 16-bit real mode, at 0x7c00 ----
    a.emit([0xFA])                          # cli: no IDT for what follows
    a.emit([0x0F, 0x01, 0x16]); a.abs16("gdtdesc")  # lgdt [gdtdesc]
    a.emit([0x0F, 0x20, 0xC0])              # mov eax, cr0
    a.emit([0x0C, 0x01])                    # or al, 1          (CR0.PE)
    a.emit([0x0F, 0x22, 0xC0])              # mov cr0, eax
    # Far jump loads CS with the 32-bit code segment.
    a.emit([0x66, 0xEA]); a.abs32("pm32"); a.emit(u16(CODE_SEL))  # ljmpl 8:pm32

    # ---- 32-bit protected mode, flat segments ----
    a.label("pm32")
    a.emit([0xB8], u32(DATA_SEL))           # mov eax, DATA_SEL
    a.emit([0x8E, 0xD8])                    # mov ds, eax
    a.emit([0x8E, 0xC0])                    # mov es, eax
    a.emit([0x8E, 0xD0])                    # mov ss, eax
    # Fast A20 gate (QEMU starts with A20 on; harmless, and real-BIOS safe).
    # Bit 0 of port 0x92 is a reset request: keep it clear.
    a.emit([0xE4, 0x92])                    # in al, 0x92
    a.emit([0x0C, 0x02])                    # or al, 2
    a.emit([0x24, 0xFE])                    # and al, 0xfe
    a.emit([0xE6, 0x92])                    # out 0x92, al
    # edx holds the serial port for the rest of the program.
    a.emit([0xBA], u32(SERIAL))             # mov edx, 0x3f8
    a.emit([0xB0, ord("A")])                # mov al, 'A'
    a.emit([0xEE])                          # out dx, al

    # Zero the test byte of every page, so all pages start equal.
    a.emit([0xB8], u32(MEM_START))          # mov eax, MEM_START
    a.label("zero")
    a.emit([0xC6, 0x00, 0x00])              # mov byte [eax], 0
    a.emit([0x05], u32(PAGE))               # add eax, PAGE
    a.emit([0x3D], u32(MEM_END))            # cmp eax, MEM_END
    a.emit([0x72]); a.rel8("zero")          # jb zero

    # ecx counts passes down to the next 'B'.
    a.emit([0xB9], u32(passes))             # mov ecx, passes
    a.label("pass")
    a.emit([0xB8], u32(MEM_START))          # mov eax, MEM_START
    a.label("page")
    a.emit([0xFE, 0x00])                    # inc byte [eax]
    a.emit([0x05], u32(PAGE))               # add eax, PAGE
    a.emit([0x3D], u32(MEM_END))            # cmp eax, MEM_END
    a.emit([0x72]); a.rel8("page")          # jb page
    a.emit([0x49])                          # dec ecx
    a.emit([0x75]); a.rel8("pass")          # jnz pass
    a.emit([0xB9], u32(passes))             # mov ecx, passes
    a.emit([0xB0, ord("B")])                # mov al, 'B'
    a.emit([0xEE])                          # out dx, al
    a.emit([0xEB]); a.rel8("pass")          # jmp pass

    # ---- GDT: null, flat code, flat data (base 0, limit 4 GiB) ----
    a.align(8)
    a.label("gdt")
    a.emit(bytes(8))                                        # null descriptor
    # limit 0xffff, base 0, access 0x9a (present, ring 0, code exec/read),
    # flags 0xc (4 KiB granularity, 32-bit) + limit bits 16-19 = 0xf.
    a.emit([0xFF, 0xFF, 0x00, 0x00, 0x00, 0x9A, 0xCF, 0x00])  # 0x08 code
    a.emit([0xFF, 0xFF, 0x00, 0x00, 0x00, 0x92, 0xCF, 0x00])  # 0x10 data (read/write)
    a.label("gdtdesc")
    a.emit(u16(3 * 8 - 1)); a.abs32("gdt")  # limit, linear base

    code = a.finish()
    if len(code) > 510:
        raise ValueError("boot code is %d bytes, max 510" % len(code))
    return code + bytes(510 - len(code)) + b"\x55\xAA"   # MBR signature


def main():
    cache = os.environ.get("QEMU_COLO_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "qemu-colo"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--passes", type=int, default=1,
                    help="full passes over the test memory per 'B' (default 1)")
    ap.add_argument("-o", "--output",
                    default=os.path.join(cache, "guest", "bootsect.img"))
    args = ap.parse_args()
    if not 1 <= args.passes < 2**32:
        ap.error("--passes must be between 1 and 2^32-1")

    image = assemble(args.passes)
    image += bytes(IMAGE_SIZE - len(image))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(image)
    os.replace(tmp, args.output)    # a concurrent reader never sees half a file
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
