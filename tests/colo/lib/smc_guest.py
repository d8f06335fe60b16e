"""A boot-sector guest that rewrites its own code on input: it prints one
marker character at a time (first 'B') to its serial port, and when a
printable character arrives on the serial port it stores it into the
immediate operand of the instruction that loads the marker, so from then on
it prints that character.

The marker is printed by code the guest patched in place, so a VM that
prints the new marker runs newly translated code: under TCG a stale
translation of the loop would keep printing the old one.  In a COLO pair
only the primary's console gets the input; the secondary receives the
patched page with a checkpoint.

    write_image(path)   # raw disk image for -drive file=PATH,format=raw
"""

import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "build_bootsect", os.path.join(HERE, "..", "guest", "build-bootsect.py"))
bootsect = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bootsect)

SERIAL_LSR = bootsect.SERIAL + 5
# Iterations of a two-instruction loop between markers (tens of ms under TCG).
DELAY = 0x400000


def assemble():
    u16, u32 = bootsect.u16, bootsect.u32
    a = bootsect.Asm(bootsect.LOAD_ADDR)

    # ---- 16-bit real mode: to 32-bit protected mode, flat segments ----
    a.emit([0xFA])                          # cli
    a.emit([0x0F, 0x01, 0x16]); a.abs16("gdtdesc")  # lgdt [gdtdesc]
    a.emit([0x0F, 0x20, 0xC0])              # mov eax, cr0
    a.emit([0x0C, 0x01])                    # or al, 1
    a.emit([0x0F, 0x22, 0xC0])              # mov cr0, eax
    a.emit([0x66, 0xEA]); a.abs32("pm32"); a.emit(u16(bootsect.CODE_SEL))

    a.label("pm32")
    a.emit([0xB8], u32(bootsect.DATA_SEL))  # mov eax, DATA_SEL
    a.emit([0x8E, 0xD8])                    # mov ds, eax
    a.emit([0x8E, 0xC0])                    # mov es, eax
    a.emit([0x8E, 0xD0])                    # mov ss, eax
    a.emit([0xBA], u32(bootsect.SERIAL))    # mov edx, 0x3f8

    a.label("loop")
    a.emit([0xB0])                          # mov al, 'B'
    a.label("marker")                       # (its operand, patched)
    a.emit([ord("B")])
    a.emit([0xEE])                          # out dx, al
    a.emit([0xB9], u32(DELAY))              # mov ecx, DELAY
    a.label("delay")
    a.emit([0x49])                          # dec ecx
    a.emit([0x75]); a.rel8("delay")         # jnz delay
    a.emit([0x66, 0xBA], u16(SERIAL_LSR))   # mov dx, LSR
    a.emit([0xEC])                          # in al, dx
    a.emit([0x66, 0xBA], u16(bootsect.SERIAL))  # mov dx, RBR (flags kept)
    a.emit([0xA8, 0x01])                    # test al, 1    (data ready)
    a.emit([0x74]); a.rel8("loop")          # jz loop
    a.emit([0xEC])                          # in al, dx
    a.emit([0x3C, 0x20])                    # cmp al, ' '
    a.emit([0x72]); a.rel8("loop")          # jb loop       (newline)
    a.emit([0xA2]); a.abs32("marker")       # mov [marker], al
    a.emit([0xEB]); a.rel8("loop")          # jmp loop

    a.align(8)
    a.label("gdt")
    a.emit(bytes(8))
    a.emit([0xFF, 0xFF, 0x00, 0x00, 0x00, 0x9A, 0xCF, 0x00])  # 0x08 code
    a.emit([0xFF, 0xFF, 0x00, 0x00, 0x00, 0x92, 0xCF, 0x00])  # 0x10 data
    a.label("gdtdesc")
    a.emit(u16(3 * 8 - 1)); a.abs32("gdt")

    code = a.finish()
    return code + bytes(510 - len(code)) + b"\x55\xAA"


def write_image(path):
    image = assemble()
    with open(path, "wb") as f:
        f.write(image + bytes(bootsect.IMAGE_SIZE - len(image)))
    return path
