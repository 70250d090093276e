"""The codes file: codec codes and what is needed to decode them, in one ``.npz``.

A codes file is a NumPy ``.npz`` archive (``numpy.savez``) with these arrays:

==================  =========================  ===================================================
name                dtype, shape               meaning
==================  =========================  ===================================================
``codes``           int16/int32/int64          ``[K, T]`` one utterance, or ``[B, K, T]`` a batch:
                    ``[K, T]`` or ``[B, K, T]``  K codebooks (16), T frames; codebook-major
``lengths``         int64 ``[B]`` (optional)   valid frames per item of a batch; frames past
                                               them are padding (any value, e.g. -1)
``sample_rate``     int64 scalar (optional)    audio samples per second of the codec (24000)
``frame_rate``      float64 scalar (optional)  code frames per second (12.5)
``codebook_size``   int64 scalar (optional)    entries per codebook (2048): valid codes
                                               are ``0 .. codebook_size - 1``
``model``           str scalar (optional)      name of the codec that made the codes
==================  =========================  ===================================================

The optional fields let a decoder refuse codes it cannot decode (another frame rate, more
codebooks) with a clear message instead of producing noise. ``omnispeech codec encode`` writes
every field; a file with ``codes`` alone is accepted.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from omnispeech.errors import InputError

FIELDS = ("codes", "lengths", "sample_rate", "frame_rate", "codebook_size", "model")


@dataclasses.dataclass(frozen=True)
class CodesFile:
    """The content of a codes file.

    Attributes:
        codes: ``[B, K, T]`` int64 (a single utterance has ``B = 1``).
        lengths: ``[B]`` valid frames per item.
        sample_rate: audio samples per second, if recorded.
        frame_rate: frames per second, if recorded.
        codebook_size: entries per codebook, if recorded.
        model: the codec's name, if recorded.
    """

    codes: np.ndarray
    lengths: np.ndarray
    sample_rate: int | None = None
    frame_rate: float | None = None
    codebook_size: int | None = None
    model: str | None = None

    def check_compatible(
        self, num_codebooks: int, codebook_size: int, sample_rate: int, frame_rate: float
    ) -> None:
        """Raise :class:`InputError` if these codes cannot come from a codec of this shape."""
        k = self.codes.shape[1]
        if k != num_codebooks:
            hint = (
                " (the codes look time-major [T, K]: store them codebook-major, codes.T)"
                if self.codes.shape[2] == num_codebooks
                else ""
            )
            raise InputError(
                f"the file has {k} codebooks; this model decodes {num_codebooks}{hint}"
            )
        if self.sample_rate is not None and self.sample_rate != sample_rate:
            raise InputError(
                f"the file's codes are for {self.sample_rate} Hz audio; this model makes "
                f"{sample_rate} Hz"
            )
        if self.frame_rate is not None and abs(self.frame_rate - frame_rate) > 1e-6:
            raise InputError(
                f"the file has {self.frame_rate:g} frames/s; this model decodes {frame_rate:g}"
            )
        if self.codebook_size is not None and self.codebook_size != codebook_size:
            raise InputError(
                f"the file's codebooks have {self.codebook_size} entries; this model's have "
                f"{codebook_size}"
            )


def save_codes(  # noqa: PLR0913 - one argument per documented field
    path: str | Path,
    codes: np.ndarray,
    lengths: np.ndarray | None = None,
    sample_rate: int | None = None,
    frame_rate: float | None = None,
    codebook_size: int | None = None,
    model: str | None = None,
) -> None:
    """Write a codes file (format in the module docstring): ``codes`` is [K, T] or [B, K, T].

    Raises:
        InputError: codes of the wrong shape or dtype; a file that cannot be written.
    """
    arr = np.asarray(codes)
    if arr.ndim not in (2, 3) or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"codes must be integer [K, T] or [B, K, T], got {arr.dtype} {arr.shape}")
    out: dict[str, np.ndarray] = {"codes": arr.astype(np.int64)}
    if lengths is not None:
        out["lengths"] = np.asarray(lengths, dtype=np.int64)
    if sample_rate is not None:
        out["sample_rate"] = np.int64(sample_rate)
    if frame_rate is not None:
        out["frame_rate"] = np.float64(frame_rate)
    if codebook_size is not None:
        out["codebook_size"] = np.int64(codebook_size)
    if model is not None:
        out["model"] = np.str_(model)
    try:
        with open(path, "wb") as fh:  # an open file keeps numpy from appending ".npz"
            np.savez(fh, **out)
    except OSError as exc:  # a missing or read-only folder, a full disk
        raise InputError(f"{path}: cannot write the codes file ({exc.strerror or exc})") from None


def load_codes(path: str | Path) -> CodesFile:
    """Read and validate a codes file.

    Raises:
        InputError: not a readable ``.npz``, no ``codes``, wrong shape or dtype, bad lengths.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a codes file (.npz)")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    # np.load reads a file that is not a zip archive as a pickle, and refuses it with advice
    # to load it "unsafely": never pass that on. A codes file is an .npz, i.e. a zip archive.
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a codes file (an .npz archive, as `codec encode` writes)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays inside the archive: never unpickled
            raise InputError(f"{path}: holds object (pickled) arrays; codes are integers") from None
        raise InputError(f"{path}: not a codes file (unreadable archive: {exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a codes file (unreadable archive: {exc})") from None
    if "codes" not in arrays:
        raise InputError(f"{path}: no 'codes' array (found {sorted(arrays)})")
    unknown = sorted(set(arrays) - set(FIELDS))
    if unknown:
        raise InputError(f"{path}: unknown arrays {unknown}; a codes file holds {list(FIELDS)}")
    codes = arrays["codes"]
    if not np.issubdtype(codes.dtype, np.integer):
        raise InputError(f"{path}: codes must be integers, got {codes.dtype}")
    if codes.ndim == 2:
        codes = codes[None]
    if codes.ndim != 3:
        raise InputError(f"{path}: codes must be [K, T] or [B, K, T], got shape {codes.shape}")
    b, _, t = codes.shape
    if "lengths" in arrays:
        lengths = np.asarray(arrays["lengths"]).astype(np.int64).reshape(-1)
        if lengths.shape != (b,) or (lengths < 0).any() or (lengths > t).any():
            raise InputError(f"{path}: lengths must be {b} values in [0, {t}]")
    else:
        lengths = np.full(b, t, dtype=np.int64)
    return CodesFile(
        codes=codes.astype(np.int64),
        lengths=lengths,
        sample_rate=_scalar(arrays, "sample_rate", int),
        frame_rate=_scalar(arrays, "frame_rate", float),
        codebook_size=_scalar(arrays, "codebook_size", int),
        model=_scalar(arrays, "model", str),
    )


def _scalar(arrays: dict[str, np.ndarray], name: str, kind: type) -> int | float | str | None:
    if name not in arrays:
        return None
    value = arrays[name]
    if value.shape != ():
        raise InputError(f"codes file field {name!r} must be a scalar, got shape {value.shape}")
    return kind(value.item())
