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
