"""DICOM decoding against pydicom by hand, on the real CT slices and on crafted files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from medclf.data.dicom import file_window
from medclf.data.discover import DiscoverOptions, discover
from medclf.data.io import decode, is_image_file
from medclf.data.pseudonym import load_key, pseudonym
from medclf.errors import MedclfError
from medclf.image_settings import WINDOW_PRESETS
from tests.conftest import SHARED_DATASETS

DICOM_SET = SHARED_DATASETS / "ct_contrast_dicom"
SLICES = sorted((DICOM_SET / "dicom_dir").glob("*.dcm"))


def _hu(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.mark.parametrize("index", [0, 5, 57])
def test_lung_window_matches_hand_computed_hounsfield_units(index: int):
    path = SLICES[index]
    hu = _hu(path)
    out = decode(path, window="lung").array
    center, width = WINDOW_PRESETS["lung"]
    expected = np.clip((hu - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    assert out.shape == hu.shape == (512, 512)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Spot checks: air is black, bone (>= +150 HU, the lung window's top) is white.
    assert out[hu <= -1400].max(initial=0) == 0.0
    assert out[hu >= 150].min(initial=1) == 1.0


def test_dicom_window_uses_the_files_first_window_like_pydicom():
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    for path in SLICES[:10]:
        ds = pydicom.dcmread(path)
        ref = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
        ref = (ref - ref.min()) / (ref.max() - ref.min())
        np.testing.assert_allclose(decode(path, window="dicom").array, ref, atol=1e-5)


def test_explicit_window_and_minmax():
    path = SLICES[1]
    hu = _hu(path)
    out = decode(path, window=[40, 400]).array
    np.testing.assert_allclose(out, np.clip((hu - 39.5) / 399 + 0.5, 0, 1), atol=1e-5)
    mm = decode(path, window="minmax").array
    assert mm.min() == 0.0 and mm.max() == 1.0


@pytest.mark.parametrize(
    ("center", "width", "expected"),
    [
        ("000040", "000400", (40.0, 400.0)),
        (["40", "-600"], ["400", "1500"], (40.0, 400.0)),
        ("  -600 ", "1500", (-600.0, 1500.0)),
        ("abc", "400", None),
        (None, "400", None),
        ("40", "0", None),
    ],
)
def test_window_tags_are_parsed_leniently(center, width, expected):
    ds = pydicom.Dataset()
    if center is not None:
        ds.add_new(0x00281050, "LO", center)  # LO: keeps any odd text exactly as written
    ds.add_new(0x00281051, "LO", width)
    assert file_window(ds) == expected


def _write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    syntax=ExplicitVRLittleEndian,
    preamble: bool = True,
    **tags,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128 if preamble else None)
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-0001"
    ds.PatientBirthDate = "19700101"
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = pixels.shape[-2:]
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=preamble)
    return path


def test_monochrome1_is_inverted(tmp_path: Path):
    ramp = np.tile(np.arange(0, 4000, 250, dtype=np.uint16), (16, 1))
    m2 = decode(_write_dicom(tmp_path / "m2.dcm", ramp), window="minmax").array
    m1 = decode(_write_dicom(tmp_path / "m1.dcm", ramp, "MONOCHROME1"), window="minmax").array
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m2[0, 0] == 0.0 and m1[0, 0] == 1.0


def test_multiframe_uses_the_middle_frame(tmp_path: Path):
    frames = np.stack([np.full((8, 8), 1000 + 100 * k, np.uint16) for k in range(5)])
    frames[2, 0, 0] = 3000  # only the middle frame has a bright corner
    out = decode(_write_dicom(tmp_path / "mf.dcm", frames), window="minmax").array
    assert out.shape == (8, 8)
    assert out[0, 0] == 1.0 and out[4, 4] == 0.0


def test_compressed_syntax_without_decoder_names_syntax_and_package(tmp_path: Path):
    path = _write_dicom(tmp_path / "c.dcm", np.zeros((8, 8)), syntax=ExplicitVRLittleEndian)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8fake-jpeg-ls\xff\xd9"])
    ds.save_as(path)
    with pytest.raises(MedclfError) as err:
        decode(path)
    msg = str(err.value)
    assert "c.dcm" in msg and "JPEG-LS Lossless" in msg and "pip install" in msg


def test_extensionless_dicom_is_found_by_its_preamble(tmp_path: Path):
    for cls, value in (("a", 500), ("b", 2500)):
        for i in range(2):
            _write_dicom(tmp_path / cls / f"IM{i:04d}", np.full((8, 8), value + i))
    (tmp_path / "a" / "README").write_text("not an image")
    assert is_image_file(tmp_path / "a" / "IM0000")
    assert not is_image_file(tmp_path / "a" / "README")
    df = discover(tmp_path)
    assert len(df) == 4 and sorted(df["label"].unique()) == ["a", "b"]
    # PatientID becomes the project's keyed pseudonym; the raw id never appears.
    assert set(df["patient_id"]) == {pseudonym("MRN-0001", load_key())}
    assert "MRN-0001" not in df.to_csv()


def test_raster_file_with_a_hu_window_is_a_clear_error(tmp_path: Path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(MedclfError, match=r"x\.png: data\.window='lung'.*not DICOM"):
        decode(tmp_path / "x.png", window="lung")


def test_ct_contrast_set_loads_by_file_name_pattern_and_by_manifest():
    by_name = discover(
        DICOM_SET / "dicom_dir",
        DiscoverOptions(label_pattern=r"CONTRAST_(\d)", class_map={"0": "plain", "1": "contrast"}),
    )
    by_manifest = discover(
        DICOM_SET / "overview.csv",
        DiscoverOptions(
            columns={"path": "dicom_name", "label": "Contrast"},
            image_root=str(DICOM_SET / "dicom_dir"),
            class_map={"False": "plain", "True": "contrast"},
        ),
    )
    for df in (by_name, by_manifest):
        assert len(df) == 100
        assert df["label"].value_counts().to_dict() == {"contrast": 50, "plain": 50}
        assert df["patient_id"].nunique() == 54
        assert not df["patient_id"].str.contains("TCGA").any()
    merged = by_name.merge(by_manifest, on="path")
    assert (merged["label_x"] == merged["label_y"]).all()
    assert "Age" in by_manifest.columns  # metadata kept for subgroup analysis


def test_ct_contrast_split_keeps_every_patient_in_one_split(tmp_path: Path):
    from medclf.config import compose
    from medclf.data.prepare import prepare_data

    cfg = compose(
        [
            f"data.path={DICOM_SET / 'dicom_dir'}",
            "data.label_pattern=CONTRAST_(\\d)",
            f"runs_root={tmp_path}",
        ]
    )
    prepared = prepare_data(cfg.data, progress=False)
    table = prepared.table
    assert len(table) == 100 and table["patient_id"].nunique() == 54
    assert (table.groupby("patient_id")["split"].nunique() == 1).all()
    # Byte-identical copies share a split too, and no PHI reaches the check report.
    assert (table.groupby("sha256")["split"].nunique() == 1).all()
    assert prepared.report["patients_in_several_splits_count"] == 0
    report_text = str(prepared.report)
    assert "TCGA" not in report_text and "PatientName" not in report_text


def test_dicom_upload_bytes_decode_like_the_file(tmp_path: Path):
    src = tmp_path / "s.dcm"
    shutil.copy(SLICES[3], src)
    np.testing.assert_array_equal(
        decode(src.read_bytes(), window="lung").array, decode(src, window="lung").array
    )
