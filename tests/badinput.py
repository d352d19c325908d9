"""Bad inputs made on the fly (no binary fixtures): decompression bombs, a checkpoint that
runs a command when unpickled, and byte-level damage."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(path: Path, width: int, height: int, bit_depth: int = 1) -> Path:
    """A valid grayscale PNG of ``width`` x ``height`` zeros: a few hundred KB on disk that
    claims (and would decode to) a huge image. Rows are compressed as a stream, so making
    it needs no full-size buffer."""
    row = b"\x00" + bytes((width * bit_depth + 7) // 8)  # filter byte + packed zero samples
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
    return path


def _rle_zero_segment(n: int) -> bytes:
    """PackBits (DICOM RLE) of ``n`` zero bytes: runs of 128 as (-127, 0)."""
    full, rest = divmod(n, 128)
    out = b"\x81\x00" * full
    if rest:
        out += bytes([(257 - rest) & 0xFF, 0]) if rest > 1 else b"\x00\x00"
    return out + (b"\x00" if len(out) % 2 else b"")


def bomb_dicom(path: Path, rows: int, cols: int, patient_id: str = "MRN-BOMB") -> Path:
    """A valid RLE Lossless 16-bit CT DICOM of ``rows`` x ``cols`` zeros: megabytes on disk,
    hundreds of millions of pixels when decoded."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import CTImageStorage, RLELossless, generate_uid

    segments = [_rle_zero_segment(rows * cols) for _ in range(2)]  # high, low bytes
    offsets = [64, 64 + len(segments[0])]
    header = struct.pack("<16I", 2, *offsets, *([0] * 13))
    frame = header + b"".join(segments)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = RLELossless
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.Modality = "CT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


class _RunsCommand:
    """Unpickling this object runs ``command`` (what a planted checkpoint would do)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def planted_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint whose unpickling creates ``marker``: proof that code ran."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "x": _RunsCommand(f"touch {marker}")}, path)
    return path


def invert_middle_bytes(path: Path, count: int = 2000) -> None:
    """Flip every bit of ``count`` bytes in the middle of a file (silent corruption)."""
    data = bytearray(path.read_bytes())
    start = max(0, len(data) // 2 - count // 2)
    chunk = np.frombuffer(bytes(data[start : start + count]), np.uint8)
    data[start : start + count] = (~chunk).tobytes()
    path.write_bytes(bytes(data))


def upload_corpus(root: Path, good_png: bytes) -> dict[str, tuple[bytes, int]]:
    """Uploads a service meets, each with the status it must get: (file bytes, status)."""
    import io

    import numpy as np
    import pydicom
    from PIL import Image
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

    def png(image: Image.Image, **kw) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=kw.pop("format", "PNG"), **kw)
        return buffer.getvalue()

    def dicom(transfer_syntax, pixels: bytes | None) -> bytes:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = transfer_syntax
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.PatientID, ds.Modality = "MRN-CORPUS", "CT"
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        if pixels is not None:
            ds.Rows = ds.Columns = 64
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
            ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.PixelData = pixels
            if transfer_syntax != ExplicitVRLittleEndian:
                ds["PixelData"].is_undefined_length = True
                ds["PixelData"].VR = "OB"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (40, 40), np.uint8)) for _ in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    jpeg = png(Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)), format="JPEG")
    palette = Image.fromarray(rng.integers(0, 255, (48, 48, 4), np.uint8), "RGBA").quantize(64)
    bomb = bomb_png(root / "bomb.png", 30000, 30000).read_bytes()
    # a JPEG 2000 encapsulated frame of garbage: pydicom has no decoder for it here
    encapsulated = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\xfe\xff\x00\xe0\x08\x00\x00\x00"
    encapsulated += b"\xff\x4f\xff\x51junk" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return {
        "zero-byte.png": (b"", 400),
        "truncated.png": (good_png[: len(good_png) // 3], 400),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], 400),
        "notes.txt": (b"patient notes, not an image\n", 400),
        "report.pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", 400),
        "bomb.png": (bomb, 413),
        "one-pixel.png": (png(Image.new("L", (1, 1), 128)), 200),
        "cmyk.jpg": (png(Image.new("CMYK", (48, 48), (10, 20, 30, 40)), format="JPEG"), 200),
        "sixteen-bit.png": (png(Image.fromarray(rng.integers(0, 4095, (48, 48), np.uint16))), 200),
        "palette-alpha.png": (png(palette), 200),
        "animated.gif": (gif.getvalue(), 400),
        "no-pixels.dcm": (dicom(ExplicitVRLittleEndian, None), 400),
        "jpeg2000-no-decoder.dcm": (dicom(JPEG2000Lossless, encapsulated), 400),
        "oversized.png": (b"\x89PNG" + b"\0" * (2 * 2**20), 413),
    }
