"""DICOM: pixel data to Hounsfield units (or the modality's own values), then a VOI window.

pydicom does the decoding and the modality LUT (RescaleSlope/RescaleIntercept, so CT values
become Hounsfield units). The window is chosen by ``data.window``:

- ``dicom``: the file's own first WindowCenter/WindowWidth (multi-valued tags take the first
  value; padded or oddly formatted numbers such as ``"000400"`` are parsed leniently); a file
  without a usable window falls back to ``minmax``.
- a named preset: ``lung`` (W1500/L-600), ``mediastinum`` (W350/L50), ``brain`` (W80/L40),
  ``bone`` (W2000/L300), ``abdomen`` (W400/L40).
- ``[center, width]``: an explicit window in modality units.
- ``minmax``: the slice's own minimum and maximum.

MONOCHROME1 images (white = low values) are inverted after windowing so that every image has
the MONOCHROME2 sense. Multi-frame files use the middle frame, documented in docs/guides/data.md: a
classifier of single images needs one plane, and the middle frame of a series is the one
most likely to show the organ, and only that frame is decoded. PHI never leaves this module:
only the pixel array and a keyed pseudonym of PatientID (``medclf.data.pseudonym``) are
returned. The header's Rows x Columns x frames x samples is checked against the pixel budget
before any pixel is decoded.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medclf.errors import MedclfError
from medclf.image_settings import FILE_WINDOW, WINDOW_PRESETS, normalize_window

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})


def looks_like_dicom(path: Path) -> bool:
    """``.dcm``/``.dicom`` files, and extension-less files with the DICM preamble."""
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix:
        return False
    return has_dicm_preamble(path)


def has_dicm_preamble(source: Path | bytes) -> bool:
    if isinstance(source, bytes):
        return source[128:132] == b"DICM"
    try:
        with source.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """The DICOM linear VOI function (PS3.3 C.11.2.1.2.1), mapped to [0, 1].

    One line of arithmetic; pydicom's ``apply_windowing`` only takes the window from a
    dataset's own tags, and presets or explicit windows are not in the file.
    """
    out = (values - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def minmax(values: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def _first_number(value: Any) -> float | None:
    """First value of a possibly multi-valued, possibly oddly formatted DS/IS element."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        if len(value) == 0:
            return None
        value = value[0]
    text = str(value).strip().split("\\")[0].strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def file_window(ds: Any) -> tuple[float, float] | None:
    center = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return None
    return center, width


@dataclass(frozen=True)
class DicomImage:
    array: np.ndarray  # (H, W) float32 in [0, 1], windowed, MONOCHROME2 sense, or (H, W, 3)
    bits_stored: int
    photometric: str


def _open(source: Path | bytes, label: str, stop_before_pixels: bool = False) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    fp: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        return pydicom.dcmread(fp, stop_before_pixels=stop_before_pixels, force=False)
    except InvalidDicomError:
        try:  # Some writers omit the 128-byte preamble; pydicom can still parse them.
            if isinstance(fp, io.BytesIO):
                fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=stop_before_pixels, force=True)
        except Exception as exc:
            raise MedclfError(f"{label}: not a readable DICOM file ({exc})") from exc
        if "PixelData" not in ds and not stop_before_pixels:
            raise MedclfError(f"{label}: not a DICOM image (no pixel data)") from None
        return ds
    except (OSError, ValueError, EOFError, TypeError) as exc:
        raise MedclfError(f"{label}: corrupt or truncated DICOM file ({exc})") from exc


def dicom_patient_id(path: Path, pseudonymize: Callable[[str], str]) -> str:
    """The pseudonym of the header's PatientID (no pixel decoding), or "" when absent."""
    try:
        ds = _open(path, str(path), stop_before_pixels=True)
    except MedclfError:
        return ""
    raw = str(ds.get("PatientID", "") or "").strip()
    return pseudonymize(raw) if raw else ""


def _header_int(ds: Any, keyword: str, default: int) -> int:
    value = _first_number(ds.get(keyword))
    return int(value) if value is not None else default


# Long on purpose: one DICOM decode in the order the standard applies it (header budget,
# frame choice, modality LUT, window, photometric inversion); each step is a few lines.
def read_dicom(
    source: Path | bytes, label: str, window: Any = FILE_WINDOW, max_pixels: int | None = None
) -> DicomImage:
    from pydicom.pixels import apply_modality_lut, get_decoder

    from medclf.image_settings import check_pixel_budget

    spec = normalize_window(window)
    ds = _open(source, label)
    if "PixelData" not in ds:
        raise MedclfError(f"{label}: DICOM file has no pixel data (not an image)")
    frames = max(_header_int(ds, "NumberOfFrames", 1), 1)
    check_pixel_budget(
        label,
        _header_int(ds, "Columns", 0),
        _header_int(ds, "Rows", 0),
        frames,
        _header_int(ds, "SamplesPerPixel", 1),
        max_pixels,
    )
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    syntax_name = getattr(syntax, "name", str(syntax or "unknown"))
    if syntax is not None and getattr(syntax, "is_compressed", False):
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            needs = "; ".join(decoder.missing_dependencies) if decoder else "a decoder plugin"
            raise MedclfError(
                f"{label}: compressed DICOM ({syntax_name}) needs a decoder that is not "
                f"installed: {needs}. Install one (e.g. pip install pylibjpeg pylibjpeg-libjpeg "
                "pylibjpeg-openjpeg) or convert the file to an uncompressed transfer syntax"
            )
    try:
        if frames > 1:  # decode the middle frame only, not the whole series
            ds.pixel_array_options(index=frames // 2)
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for broken pixel data
        raise MedclfError(
            f"{label}: cannot decode DICOM pixel data ({syntax_name}): {exc}"
        ) from exc

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1 and pixels.ndim == (3 if samples == 1 else 4):
        pixels = pixels[frames // 2]  # a decoder that ignored the index
    bits = int(ds.get("BitsStored", 8 * pixels.dtype.itemsize) or 8)

    if samples == 3 or pixels.ndim == 3:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        scale = float(2**bits - 1) if np.issubdtype(pixels.dtype, np.integer) else 1.0
        arr = np.clip(pixels.astype(np.float32) / scale, 0.0, 1.0)
        return DicomImage(arr, bits, photometric)

    values = apply_modality_lut(pixels, ds).astype(np.float32)
    if spec == "minmax":
        arr = minmax(values)
    else:
        chosen = file_window(ds) if spec == FILE_WINDOW else None
        if spec == FILE_WINDOW and chosen is None:
            arr = minmax(values)
        else:
            center, width = chosen or (WINDOW_PRESETS[spec] if isinstance(spec, str) else spec)
            arr = apply_window(values, center, width)
    if photometric == "MONOCHROME1":
        arr = 1.0 - arr
    return DicomImage(arr.astype(np.float32), bits, photometric)
