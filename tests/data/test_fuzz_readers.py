"""Fuzzing ``fagan.data.io.read_volume`` with damaged copies of real NIfTI, DICOM and HDF5 files.

Every damaged file must either read as a valid volume or be refused with a one-line
:class:`fagan.FaganError` (a ``ValueError``). Each read runs in a forked child under an
address-space limit (``RLIMIT_AS``: what the test process already maps plus ``HEADROOM``) and an
alarm, so an allocation sized by a lying header, a hang or a crash in a C extension shows up as a
failed example instead of taking the test run down.

The default suite runs a short, derandomised (fixed-seed) campaign per input kind; the
``slow``-marked variants run the same strategies for many more examples. With ``-s`` each
campaign prints how many inputs it tried and what became of them (the figures in RELIABILITY.md)::

    python -m pytest -q -s tests/data/test_fuzz_readers.py                  # a few seconds
    python -m pytest -q -s -m slow tests/data/test_fuzz_readers.py          # the long run
"""

from __future__ import annotations

import collections
import faulthandler
import gzip
import io
import os
import resource
import shutil
import signal
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from fagan import FaganError
from fagan.data import io as fio
from fagan.data.io import read_volume
from fagan.data.sample import FILES

#: Address space a single read may add to what the test process maps already.
HEADROOM = 768 * 2**20
#: Seconds a single read may take before it counts as a hang.
TIMEOUT_S = 30
#: Examples per campaign: (default suite, slow run).
FAST, SLOW = 12, 1500

NIFTI_SEED = FILES / "nibabel_anatomical.nii"  # 33x41x25 int16, big-endian
DICOM_SEED = FILES / "pydicom_MR_small.dcm"  # 64x64 single frame
MULTIFRAME_SEED = FILES / "pydicomdata_emri_small.dcm"  # enhanced MR, 10 frames

#: What happened to the inputs of each campaign: {campaign: Counter(outcome kind)}.
TALLY: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
#: The messages of inputs that were not simply read or refused: {campaign: Counter((kind, message))}.
NOTES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


# ----------------------------------------------------------------------------------------------
# Running one read in a bounded child process


def _mapped_bytes() -> int:
    """This process's virtual memory size (VmSize) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _raised_in(exc: BaseException) -> str:
    """The name of the function whose frame raised ``exc``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_name if tb is not None else ""


def read_in_child(path: Path) -> tuple[str, str]:
    """Read ``path`` in a forked child under a memory limit and an alarm.

    Returns ``(kind, detail)``: ``("read", shape)``, ``("refused", message)`` for a FaganError,
    ``("safety-net", message)`` for a FaganError that ``read_volume`` made of another exception
    (a one-line error for the user, but a case the reader does not name), or a failure kind:
    ``"other-exception"``, ``"multi-line"``, ``"killed"`` (a signal: SIGALRM is a hang, SIGSEGV a
    crash) with the details.
    """
    limit = _mapped_bytes() + HEADROOM
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            faulthandler.disable()  # a crash is reported by the parent, not dumped by pytest
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            signal.alarm(TIMEOUT_S)
            try:
                volume = read_volume(path)
                report = f"read\t{volume.array.shape}"
            except FaganError as exc:
                text = str(exc)
                kind = "refused" if text and "\n" not in text else "multi-line"
                if _raised_in(exc) == "read_volume":
                    kind = "safety-net"  # a library's exception turned into a FaganError
                report = f"{kind}\t{text}"
            except BaseException as exc:  # noqa: BLE001 - any other type is the finding
                report = f"other-exception\t{type(exc).__module__}.{type(exc).__name__}: {exc}"
            os.write(w, report.encode("utf-8", "replace")[:8000])
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        report = pipe.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "killed", signal.Signals(os.WTERMSIG(status)).name
    kind, _, detail = report.partition("\t")
    return kind or "no-report", detail


def _check(campaign: str, path: Path) -> None:
    kind, detail = read_in_child(path)
    TALLY[campaign][kind] += 1
    if kind not in ("read", "refused"):
        NOTES[campaign][kind, detail.replace(str(path), "FILE")] += 1
    assert kind in ("read", "refused", "safety-net"), f"{campaign}: {kind}: {detail}"


def _report(campaign: str) -> None:
    counts = TALLY[campaign]
    total = sum(counts.values())
    parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"\n{campaign}: {total} inputs: {parts}")
    for (kind, detail), n in NOTES[campaign].most_common(5):
        print(f"    {n} x {kind}: {detail[:300]}")


def _run(campaign: str, strategy: st.SearchStrategy, write: Callable[[Path, object], Path], n: int) -> None:
    """Draw ``n`` inputs from ``strategy``, write each with ``write(folder, value)`` and read it."""
    TALLY.pop(campaign, None)
    NOTES.pop(campaign, None)
    read_volume(NIFTI_SEED)  # import the readers here, not in every child

    @settings(
        max_examples=n,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def campaign_body(value: object) -> None:
        with tempfile.TemporaryDirectory() as folder:
            _check(campaign, write(Path(folder), value))

    campaign_body()
    _report(campaign)


# ----------------------------------------------------------------------------------------------
# Generic byte mutations (drawn as short descriptions, applied to a seed when written)


def mutation(n: int, header: int) -> st.SearchStrategy[tuple]:
    """A change to an ``n``-byte file: flipped bytes (mostly in the first ``header`` bytes), a cut,
    a deleted range or inserted random bytes."""
    position = st.one_of(st.integers(0, min(header, n) - 1), st.integers(0, n - 1))
    return st.one_of(
        st.tuples(
            st.just("flip"), st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=8)
        ),
        st.tuples(st.just("cut"), st.integers(0, n - 1)),
        st.tuples(st.just("delete"), position, st.integers(1, 512)),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=64)),
    )


def mutate(data: bytes, change: tuple) -> bytes:
    """Apply a :func:`mutation` to ``data``."""
    kind, *args = change
    if kind == "flip":
        out = bytearray(data)
        for at, value in args[0]:
            out[at] = value
        return bytes(out)
    if kind == "cut":
        return data[: args[0]]
    if kind == "delete":
        return data[: args[0]] + data[args[0] + args[1] :]
    return data[: args[0]] + args[1] + data[args[0] :]


def _writer(name: str, seed: bytes, apply: Callable[[bytes, tuple], bytes] = mutate) -> Callable:
    def write(folder: Path, change: tuple) -> Path:
        path = folder / name
        path.write_bytes(apply(seed, change))
        return path

    return write


# ----------------------------------------------------------------------------------------------
# NIfTI: header fields by offset (NIfTI-1 layout), in the file's own byte order

_INT16 = [-32768, -1, 0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 255, 256, 512, 768, 1024, 2048, 4096, 32767]
_FLOATS = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -1.0, 1e-30, 0.5, 1.0, 2.0, 1e30, 3.4e38]
_DATATYPES = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 7, -1]
#: field -> (byte offset, struct code, number of values, candidate values)
NIFTI_FIELDS: dict[str, tuple[int, str, int, list]] = {
    "sizeof_hdr": (0, "i", 1, [0, -1, 348, 540, 2**31 - 1]),
    "dim": (40, "h", 8, _INT16),
    "datatype": (70, "h", 1, _DATATYPES),
    "bitpix": (72, "h", 1, [0, 1, 8, 16, 32, 64, 128, -16]),
    "pixdim": (76, "f", 8, _FLOATS),
    "vox_offset": (108, "f", 1, [*_FLOATS, 348.0, 351.0, 352.0, 353.5, 4096.0, 68000.0, 1e9]),
    "scl_slope": (112, "f", 1, _FLOATS),
    "scl_inter": (116, "f", 1, _FLOATS),
    "qform_code": (252, "h", 1, [-1, 0, 1, 2, 3, 4, 5, 32767]),
    "sform_code": (254, "h", 1, [-1, 0, 1, 2, 3, 4, 5, 32767]),
    "quatern_offsets": (256, "f", 6, _FLOATS),
    "srow": (280, "f", 12, _FLOATS),
}


@st.composite
def nifti_tampering(draw: st.DrawFn) -> tuple:
    """One to four NIfTI-1 header fields set to edge values, sometimes a broken magic."""
    fields = []
    for name in draw(st.lists(st.sampled_from(sorted(NIFTI_FIELDS)), min_size=1, max_size=4)):
        _, _, count, values = NIFTI_FIELDS[name]
        fields.append((name, draw(st.integers(0, count - 1)), draw(st.sampled_from(values))))
    magic = draw(st.sampled_from([None] * 6 + [b"ni1\0", b"n+2\0", b"\0\0\0\0", b"n+1x"]))
    return tuple(fields), magic


def tamper_nifti(data: bytes, change: tuple) -> bytes:
    """Apply a :func:`nifti_tampering` to an uncompressed NIfTI-1 file."""
    order = "<" if struct.unpack("<i", data[:4])[0] == 348 else ">"
    out = bytearray(data)
    fields, magic = change
    for name, index, value in fields:
        offset, code, _, _ = NIFTI_FIELDS[name]
        struct.pack_into(order + code, out, offset + index * struct.calcsize(code), value)
    if magic is not None:
        out[344:348] = magic
    return bytes(out)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


# ----------------------------------------------------------------------------------------------
# DICOM: header elements replaced by raw (possibly invalid) values

_DICOM_US = [0, 1, 2, 7, 8, 12, 16, 24, 32, 63, 64, 65, 128, 255, 4096, 65535]
#: keyword -> (VR, candidate raw values)
DICOM_FIELDS: dict[str, tuple[str, list]] = {
    "Rows": ("US", _DICOM_US),
    "Columns": ("US", _DICOM_US),
    "BitsAllocated": ("US", [0, 1, 7, 8, 12, 16, 32, 64, 65535]),
    "BitsStored": ("US", [0, 1, 8, 12, 16, 17, 32, 65535]),
    "HighBit": ("US", [0, 7, 11, 15, 16, 31, 65535]),
    "PixelRepresentation": ("US", [0, 1, 2, 65535]),
    "SamplesPerPixel": ("US", [0, 1, 2, 3, 4, 65535]),
    "PlanarConfiguration": ("US", [0, 1, 2]),
    "NumberOfFrames": (
        "IS",
        [b"0", b"-1", b"1", b"2", b"9", b"10", b"11", b"1000000", b"2147483647", b"abc", b""],
    ),
    "PhotometricInterpretation": (
        "CS",
        [b"MONOCHROME1", b"MONOCHROME2", b"RGB", b"PALETTE COLOR", b"YBR_FULL", b""],
    ),
    "PixelSpacing": ("DS", [b"0\\0", b"-1\\1", b"nan\\1", b"inf\\inf", b"1e308\\1", b"1", b"x\\y", b""]),
    "SliceThickness": ("DS", [b"0", b"-5", b"nan", b"inf", b"1e308", b"abc", b""]),
    "SpacingBetweenSlices": ("DS", [b"0", b"-5", b"nan", b"1e308"]),
    "ImagePositionPatient": (
        "DS",
        [b"0\\0\\0", b"nan\\0\\0", b"inf\\-inf\\0", b"1e308\\1e308\\1e308", b"1\\2", b""],
    ),
    "ImageOrientationPatient": (
        "DS",
        [
            b"0\\0\\0\\0\\0\\0",
            b"1\\0\\0\\1\\0\\0",
            b"nan\\0\\0\\0\\1\\0",
            b"1\\0\\0",
            b"1e308\\0\\0\\0\\1e308\\0",
        ],
    ),
    "RescaleSlope": ("DS", [b"0", b"-1", b"nan", b"inf", b"1e308", b"1e-308", b"abc", b""]),
    "RescaleIntercept": ("DS", [b"nan", b"-inf", b"1e308", b"abc", b""]),
    "InstanceNumber": ("IS", [b"-1", b"abc", b"99999999999999999999"]),
    "SeriesInstanceUID": ("UI", [b"", b"1.2", b"\xff\xfe"]),
    "TransferSyntaxUID": (
        "UI",
        [
            b"1.2.840.10008.1.2",  # implicit VR little endian
            b"1.2.840.10008.1.2.2",  # explicit VR big endian
            b"1.2.840.10008.1.2.1.99",  # deflated
            b"1.2.840.10008.1.2.4.50",  # JPEG baseline
            b"1.2.840.10008.1.2.4.90",  # JPEG 2000
            b"1.2.840.10008.1.2.5",  # RLE
            b"9.9.9",
        ],
    ),
}


@st.composite
def dicom_tampering(draw: st.DrawFn) -> tuple:
    """One to four elements given raw values (None: deleted), and sometimes PixelData cut to a
    fraction of its length."""
    fields = []
    for keyword in draw(st.lists(st.sampled_from(sorted(DICOM_FIELDS)), min_size=1, max_size=4)):
        values = DICOM_FIELDS[keyword][1]
        fields.append((keyword, draw(st.sampled_from([None, *values]))))
    cut = draw(st.sampled_from([None] * 7 + [0.0, 0.1, 0.5, 0.99]))
    return tuple(fields), cut


def _raw_value(vr: str, value: int | bytes) -> bytes:
    raw = struct.pack("<H", value) if vr == "US" else bytes(value)  # type: ignore[arg-type]
    return raw + (b"" if len(raw) % 2 == 0 else b"\0" if vr == "UI" else b" ")


def tamper_dicom(data: bytes, change: tuple) -> bytes:
    """Apply a :func:`dicom_tampering` to a DICOM file and save it again."""
    ds = pydicom.dcmread(io.BytesIO(data))
    fields, cut = change
    syntax = None
    for keyword, value in fields:
        if keyword == "TransferSyntaxUID":
            syntax = value  # patched into the written bytes: pydicom would re-encode the data
            continue
        tag = Tag(keyword)
        if value is None:
            if tag in ds:
                del ds[tag]
            continue
        vr = DICOM_FIELDS[keyword][0]
        raw = _raw_value(vr, value)
        ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    if cut is not None and "PixelData" in ds:
        ds.PixelData = ds.PixelData[: int(len(ds.PixelData) * cut)]
    out = io.BytesIO()
    ds.save_as(out)  # written as the dataset was read (explicit VR little endian)
    return out.getvalue() if syntax is None else _patch_transfer_syntax(out.getvalue(), syntax)


def _patch_transfer_syntax(data: bytes, uid: bytes) -> bytes:
    """``data`` with its (0002,0010) Transfer Syntax UID replaced by ``uid`` (raw, any length) and
    the file meta group length fixed to match."""
    start = data.index(b"\x02\x00\x10\x00UI")
    length = struct.unpack("<H", data[start + 6 : start + 8])[0]
    value = _raw_value("UI", uid)
    element = b"\x02\x00\x10\x00UI" + struct.pack("<H", len(value)) + value
    out = bytearray(data[:start] + element + data[start + 8 + length :])
    group = out.find(b"\x02\x00\x00\x00UL\x04\x00")
    if group >= 0:
        old = struct.unpack("<I", out[group + 8 : group + 12])[0]
        struct.pack_into("<I", out, group + 8, old + len(value) - length)
    return bytes(out)


def _any_change(data: bytes, change: tuple) -> bytes:
    """A :func:`mutation` (its first item names it) or a :func:`dicom_tampering`."""
    return mutate(data, change) if isinstance(change[0], str) else tamper_dicom(data, change)


def _dicom_series(folder: Path, victim: bytes) -> Path:
    """A three-slice series of DICOM_SEED copies 0.8 mm apart, the middle one replaced by ``victim``."""
    series = folder / "series"
    series.mkdir()
    for k in (0, 2):
        (series / f"im{k}.dcm").write_bytes(_series_slice(k))
    (series / "im1.dcm").write_bytes(victim)
    return series


def _series_slice(k: int) -> bytes:
    ds = pydicom.dcmread(DICOM_SEED)
    ds.ImagePositionPatient = [0.0, 0.0, 0.8 * k]
    ds.InstanceNumber = k + 1
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{k + 1}"
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


# ----------------------------------------------------------------------------------------------
# fastMRI HDF5: files built to a drawn description, and byte mutations of a valid one

ISMRMRD = (
    '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding><reconSpace>'
    "<matrixSize><x>{mx}</x><y>{my}</y><z>1</z></matrixSize><fieldOfView_mm><x>{fx}</x><y>{fy}</y>"
    "<z>3</z></fieldOfView_mm></reconSpace></encoding></ismrmrdHeader>"
)
_H5_DIMS = [0, 1, 2, 3, 8, 17, 640, 2**16, 2**20, 2**31 - 1]
_H5_DTYPES = ["<f4", ">f4", "<f8", "<f2", "<i2", "u1", "<u8", "<c8", "?", "S4", "compound", "vlen"]
_XML_VALUES = ["0", "-1", "nan", "inf", "abc", "", "1e308", "320"]


@st.composite
def fastmri_description(draw: st.DrawFn) -> dict:
    """A fastMRI-like file: which image dataset (or a group/link in its place), its shape, dtype,
    storage, and the ISMRMRD header."""
    shape = tuple(draw(st.lists(st.sampled_from(_H5_DIMS), min_size=0, max_size=4)))
    if draw(st.booleans()):  # often a plausible (slices, rows, cols) volume
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    return {
        "name": draw(st.sampled_from(["reconstruction_rss", "reconstruction_esc", "kspace"])),
        "kind": draw(st.sampled_from(["dataset"] * 6 + ["group", "soft-link", "external-link"])),
        "shape": shape,
        "dtype": draw(st.sampled_from(_H5_DTYPES)),
        "storage": draw(st.sampled_from(["written", "written", "unwritten", "chunked", "gzip", "partial"])),
        "header": draw(st.sampled_from(["xml", "xml", "garbage", "array", "group", "none"])),
        "xml": [draw(st.sampled_from(_XML_VALUES)) for _ in range(4)],
        "seed": draw(st.integers(0, 2**16)),
    }


def _dtype(name: str) -> np.dtype:
    if name == "compound":
        return np.dtype([("re", "<f4"), ("im", "<f4")])
    if name == "vlen":
        return h5py.vlen_dtype(np.dtype("<f4"))
    return np.dtype(name)


def write_fastmri(folder: Path, d: dict) -> Path:
    """Write the file ``d`` describes; data is written only for datasets of at most 64k values."""
    path = folder / "file.h5"
    rng = np.random.default_rng(d["seed"])
    with h5py.File(path, "w") as f:
        f.attrs["acquisition"] = "CORPD_FBK"
        name, shape, dtype = d["name"], d["shape"], _dtype(d["dtype"])
        while np.prod(shape, dtype=np.float64) * dtype.itemsize >= 2**62:  # beyond what HDF5 addresses
            largest = int(np.argmax(shape))
            shape = (*shape[:largest], 1, *shape[largest + 1 :])
        size = int(np.prod(shape, dtype=np.float64)) if shape else 1
        if d["kind"] == "group":
            f.create_group(name)
        elif d["kind"] == "soft-link":
            f[name] = h5py.SoftLink("/nowhere")
        elif d["kind"] == "external-link":
            f[name] = h5py.ExternalLink(str(folder / "missing.h5"), "/data")
        else:
            storage = d["storage"] if size <= 2**16 and 0 not in shape else "unwritten"
            chunked = storage in ("chunked", "gzip", "partial") and len(shape) > 0 and 0 not in shape
            dataset = f.create_dataset(
                name,
                shape=shape,
                dtype=dtype,
                chunks=tuple(max(1, s // 2) for s in shape) if chunked else None,
                compression="gzip" if storage == "gzip" and chunked else None,
            )
            if storage != "unwritten" and dtype.kind in "fiub?c" and dtype.fields is None:
                values = (rng.random(shape) * 1000).astype(dtype) if shape else dtype.type(1)
                if storage == "partial" and len(shape) > 0:
                    dataset[: max(1, shape[0] // 2)] = values[: max(1, shape[0] // 2)]
                else:
                    dataset[()] = values
        mx, my, fx, fy = d["xml"]
        if d["header"] == "xml":
            f["ismrmrd_header"] = np.bytes_(ISMRMRD.format(mx=mx, my=my, fx=fx, fy=fy))
        elif d["header"] == "garbage":
            f["ismrmrd_header"] = np.bytes_(
                b"<ismrmrdHeader><encoding>" + bytes(rng.integers(0, 256, 40, np.uint8))
            )
        elif d["header"] == "array":
            f["ismrmrd_header"] = np.arange(6.0)
        elif d["header"] == "group":
            f.create_group("ismrmrd_header")
    return path


#: A valid fastMRI-like file: 3 slices of 24x20 float32 magnitude and an ISMRMRD header.
VALID_FASTMRI: dict[str, object] = {
    "name": "reconstruction_rss",
    "kind": "dataset",
    "shape": (3, 24, 20),
    "dtype": "<f4",
    "storage": "written",
    "header": "xml",
    "xml": ["20", "24", "200", "240"],
    "seed": 0,
}


def fastmri_bytes() -> bytes:
    """The bytes of the :data:`VALID_FASTMRI` file."""
    with tempfile.TemporaryDirectory() as folder:
        return write_fastmri(Path(folder), dict(VALID_FASTMRI)).read_bytes()


# ----------------------------------------------------------------------------------------------
# The campaigns


def _campaigns() -> dict[str, tuple[st.SearchStrategy, Callable[[Path, tuple], Path]]]:
    """Each campaign: a strategy of changes and a function writing the changed file."""
    nifti = NIFTI_SEED.read_bytes()
    nifti_gz = _gzip(nifti)
    dicom, multiframe, h5 = DICOM_SEED.read_bytes(), MULTIFRAME_SEED.read_bytes(), fastmri_bytes()
    middle = _series_slice(1)
    return {
        "nifti-bytes": (mutation(len(nifti), 352), _writer("v.nii", nifti)),
        "nifti-header": (nifti_tampering(), _writer("v.nii", nifti, tamper_nifti)),
        "nifti-gz-bytes": (mutation(len(nifti_gz), 64), _writer("v.nii.gz", nifti_gz)),
        "nifti-gz-header": (
            nifti_tampering(),
            _writer("v.nii.gz", nifti, lambda data, change: _gzip(tamper_nifti(data, change))),
        ),
        "dicom-bytes": (mutation(len(dicom), 1500), _writer("im.dcm", dicom)),
        "dicom-header": (dicom_tampering(), _writer("im.dcm", dicom, tamper_dicom)),
        "dicom-multiframe-bytes": (mutation(len(multiframe), 8000), _writer("mf.dcm", multiframe)),
        "dicom-multiframe-header": (dicom_tampering(), _writer("mf.dcm", multiframe, tamper_dicom)),
        "dicom-series": (
            st.one_of(mutation(len(middle), 1500), dicom_tampering()),
            lambda folder, change: _dicom_series(folder, _any_change(middle, change)),
        ),
        "hdf5-structure": (fastmri_description(), write_fastmri),
        "hdf5-bytes": (mutation(len(h5), 2048), _writer("file.h5", h5)),
    }


CAMPAIGNS = list(_campaigns())


@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_damaged_files_read_or_raise_one_line_fagan_error(campaign: str) -> None:
    strategy, write = _campaigns()[campaign]
    _run(campaign, strategy, write, FAST)


@pytest.mark.slow
@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_damaged_files_long_run(campaign: str) -> None:
    strategy, write = _campaigns()[campaign]
    _run(campaign, strategy, write, SLOW)


def test_the_harness_catches_what_it_is_for(tmp_path, monkeypatch) -> None:
    """The child reports crashes, hangs, big allocations and foreign exceptions as failures."""
    path = tmp_path / "v.nii"
    shutil.copy(NIFTI_SEED, path)
    assert read_in_child(path)[0] == "read"

    def allocate(*args: object, **kwargs: object) -> None:
        np.ones(2 * HEADROOM // 8)  # beyond the headroom: MemoryError in the child

    monkeypatch.setattr(fio, "_read_nifti", allocate)
    monkeypatch.setitem(fio._READERS, "nifti", allocate)
    kind, detail = read_in_child(path)
    assert kind == "other-exception" and "MemoryError" in detail

    monkeypatch.setitem(fio._READERS, "nifti", lambda *a: os.kill(os.getpid(), signal.SIGSEGV))
    assert read_in_child(path) == ("killed", "SIGSEGV")

    monkeypatch.setitem(fio._READERS, "nifti", lambda *a: signal.raise_signal(signal.SIGALRM))
    assert read_in_child(path) == ("killed", "SIGALRM")  # what a hang ends as

    def lie(*args: object) -> None:
        raise KeyError("dim")

    monkeypatch.setitem(fio._READERS, "nifti", lie)
    assert read_in_child(path) == (
        "safety-net",
        f"{path}: cannot read this NIfTI file ('dim'); it may be truncated or corrupt - "
        "copy or export it again",
    )


# ----------------------------------------------------------------------------------------------
# Regressions: what fuzzing found, each as a fixed example


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _refused(path: Path, match: str) -> None:
    kind, detail = read_in_child(path)
    assert kind == "refused", (kind, detail)
    assert match in detail, detail


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        # Columns lied about: pixel data no longer fitted numpy's reshape (a bare ValueError).
        ((("Columns", 24),), "does not match 1 frame(s) of 64x24"),
        ((("NumberOfFrames", b"abc"),), "NumberOfFrames is 'abc', not a whole number"),  # int()'s error
        ((("RescaleSlope", b"abc"),), "RescaleSlope is 'abc', not a number"),  # float()'s error
        ((("Rows", 0),), "gives 1 frame(s) of 0x64 pixels"),
        # A newline inside the transfer syntax UID ended up inside the message.
        ((("TransferSyntaxUID", b"1\n2.840.10008.1.2.1"),), "transfer syntax 1 2.840.10008.1.2.1"),
    ],
    ids=["columns-lie", "frames-not-a-number", "slope-not-a-number", "zero-rows", "newline-in-uid"],
)
def test_dicom_header_lies_are_named(tmp_path, fields, match) -> None:
    _refused(_write(tmp_path, "im.dcm", tamper_dicom(DICOM_SEED.read_bytes(), (fields, None))), match)


def test_dicom_element_with_an_unknown_vr_is_one_line(tmp_path) -> None:
    """pydicom decodes elements lazily and raises NotImplementedError when a damaged one is first
    used: read_volume's safety net names it (an element fagan never uses does not matter)."""
    data = DICOM_SEED.read_bytes()
    at = data.index(b"\x18\x00\x50\x00DS") + 4  # SliceThickness, its VR bytes
    damaged = data[:at] + b"\x43\xca" + data[at + 2 :]
    kind, detail = read_in_child(_write(tmp_path, "im.dcm", damaged))
    assert kind == "safety-net", (kind, detail)
    assert (
        "cannot read this DICOM file (Unknown Value Representation '0x43 0xca' in tag (0018,0050))" in detail
    )


def test_dicom_without_usable_orientation_reads_with_missing_geometry(tmp_path) -> None:
    """All-zero direction cosines used to give a singular affine; now the geometry counts as missing."""
    change = ((("ImageOrientationPatient", b"0\\0\\0\\0\\0\\0"),), None)
    volume = read_volume(_write(tmp_path, "im.dcm", tamper_dicom(DICOM_SEED.read_bytes(), change)))
    assert volume.meta["geometry"] == "missing"
    np.testing.assert_allclose(volume.affine, np.diag([-0.3125, -0.3125, 0.8, 1.0]))  # LPS to RAS


def test_nifti_header_lies_are_named(tmp_path) -> None:
    nifti = NIFTI_SEED.read_bytes()
    # dim[3] = 0 in a .nii.gz: nibabel read an empty array that did not fit the reshape.
    empty = _gzip(tamper_nifti(nifti, ((("dim", 3, 0),), None)))
    _refused(_write(tmp_path, "empty.nii.gz", empty), "empty image of shape (33, 41, 0)")
    # 1024^3 int16 voxels (2 GiB) claimed by a 25 kB .nii.gz: refused before allocating.
    huge = _gzip(tamper_nifti(nifti, ((("dim", 1, 1024), ("dim", 2, 1024), ("dim", 3, 1024)), None)))
    _refused(_write(tmp_path, "huge.nii.gz", huge), "more than a")
    # A zeroed sform row made voxel axis 0 of length 0; the qform of this file is valid and
    # places it instead. Without a qform, the affine itself is named.
    zeroed = (("srow", 0, 0.0), ("srow", 1, 0.0), ("srow", 2, 0.0))
    flat = read_volume(_write(tmp_path, "flat.nii", tamper_nifti(nifti, (zeroed, None))))
    import nibabel as nib

    np.testing.assert_allclose(flat.affine, nib.load(NIFTI_SEED).get_qform(), atol=1e-6)
    assert flat.meta["geometry"] == "qform, the sform being singular"
    alone = tamper_nifti(nifti, ((*zeroed, ("qform_code", 0, 0)), None))
    _refused(_write(tmp_path, "alone.nii", alone), "the affine is singular")


def _fastmri(tmp_path: Path, **changes: object) -> Path:
    description = {**VALID_FASTMRI, **changes}
    folder = tmp_path / str(len(list(tmp_path.iterdir())))
    folder.mkdir()
    return write_fastmri(folder, description)


def test_hdf5_structure_lies_are_named(tmp_path) -> None:
    assert read_volume(_fastmri(tmp_path)).array.shape == (20, 24, 3)
    # A group where the image belongs: h5py's AttributeError (no .shape).
    _refused(_fastmri(tmp_path, kind="group"), "reconstruction_rss is a Group, not an image dataset")
    # Dangling soft and external links: h5py's KeyError.
    for kind in ("soft-link", "external-link"):
        _refused(_fastmri(tmp_path, kind=kind), "cannot read this HDF5 file")
    # 1000^3 float32 voxels (4 GB) declared but never written: refused before allocating them.
    _refused(_fastmri(tmp_path, shape=(1000, 1000, 1000), storage="unwritten"), "the file stores 0")
    _refused(_fastmri(tmp_path, storage="partial"), "never completely written")


def test_hdf5_byte_damage_is_named(tmp_path) -> None:
    """Corrupt B-tree, heap and attribute bytes raised RuntimeError, OSError or KeyError from h5py."""
    data = fastmri_bytes()
    seen = collections.Counter()
    for at in range(0, 2048, 41):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        kind, detail = read_in_child(_write(tmp_path, f"d{at}.h5", bytes(damaged)))
        seen[kind] += 1
        assert kind in ("read", "refused", "safety-net"), (at, kind, detail)
    assert seen["refused"] > 10
