"""Content digests of the datasets a run uses (``sweep.log_input``).

The digest is ``sha256:<hex>`` of the data itself, so it is the same in every run and
process that sees the same data, and differs when a value, the shape, a dtype or a
column changes:

- a file: the SHA-256 of its bytes (what ``sha256sum`` prints);
- a directory: every file below it in sorted path order (relative path, size, bytes);
- a numpy array, a list or tuple of numbers, or another array-like (as the array numpy
  makes of it): dtype, shape and the values' bytes in C order, little-endian;
- a pandas DataFrame or Series: column names, dtypes and values (pandas' own stable
  row hash); pandas is imported only when one is given;
- ``bytes``, ``bytearray`` or ``memoryview``: the bytes.

Each digest comes with a small profile (rows, shape, dtype or columns, size) for display.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.errors import InvalidValueError

_CHUNK = 1024 * 1024
#: Columns listed in a table's profile; wider tables list these and count the rest.
MAX_PROFILE_COLUMNS = 50


@dataclass(frozen=True)
class DatasetDigest:
    digest: str  # "sha256:<hex>"
    profile: dict[str, Any]
    source: str | None  # a default source URI (a file's file:// URI), if the data has one


def digest_dataset(data: Any) -> DatasetDigest:
    """The content digest and profile of ``data``; raises InvalidValueError for data it
    cannot digest."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = memoryview(data).cast("B")
        digest = _sha256(b"bytes\0", raw)
        return DatasetDigest(digest, {"type": "bytes", "size": raw.nbytes}, None)
    if isinstance(data, (str, os.PathLike)):
        return _digest_path(Path(data))
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, (pandas.DataFrame, pandas.Series)):
        return _digest_pandas(data)
    import numpy as np

    if isinstance(data, np.ndarray):
        return _digest_array(data, "ndarray")
    if isinstance(data, (list, tuple)):
        array = np.asarray(data)
        if array.dtype.kind not in "biuf":
            raise InvalidValueError(
                "log_input: a list or tuple must hold numbers (or equal-length lists of "
                "numbers); convert other data to a numpy array, a DataFrame or bytes"
            )
        return _digest_array(array, type(data).__name__)
    if hasattr(data, "__array__"):  # array-likes: a CPU torch tensor, an xarray, ...
        return _digest_array(np.asarray(data), type(data).__name__)
    raise InvalidValueError(
        f"log_input cannot digest a {type(data).__name__}: pass a numpy array, a pandas "
        "DataFrame or Series, a list of numbers, bytes, or a file or directory path"
    )


def _sha256(*parts: bytes | memoryview) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return f"sha256:{digest.hexdigest()}"


def _digest_array(array: Any, kind: str) -> DatasetDigest:
    import numpy as np

    if array.dtype.hasobject:
        raise InvalidValueError(
            "log_input cannot digest an array of Python objects: its bytes are pointers; "
            "convert it to numbers or strings (e.g. array.astype(str)) first"
        )
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    contiguous = np.ascontiguousarray(array, dtype=dtype)
    header = f"ndarray\0{contiguous.dtype.str}\0{contiguous.shape}\0".encode()
    digest = _sha256(header, contiguous.reshape(-1).view(np.uint8).data)
    profile: dict[str, Any] = {
        "type": kind,
        "shape": list(contiguous.shape),
        "dtype": str(array.dtype),
    }
    if contiguous.ndim:
        profile["rows"] = int(contiguous.shape[0])
    return DatasetDigest(digest, profile, None)


def _digest_pandas(data: Any) -> DatasetDigest:
    import pandas as pd

    frame = data.to_frame() if isinstance(data, pd.Series) else data
    columns = [(str(name), str(dtype)) for name, dtype in frame.dtypes.items()]
    header = f"pandas\0{type(data).__name__}\0{columns!r}\0{len(frame)}\0".encode()
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype="<u8")
    digest = _sha256(header, memoryview(rows).cast("B"))
    profile: dict[str, Any] = {"type": type(data).__name__, "rows": len(frame)}
    if isinstance(data, pd.Series):
        profile.update(name=None if data.name is None else str(data.name), dtype=str(data.dtype))
    else:
        profile["columns"] = dict(columns[:MAX_PROFILE_COLUMNS])
        if len(columns) > MAX_PROFILE_COLUMNS:
            profile["more_columns"] = len(columns) - MAX_PROFILE_COLUMNS
    return DatasetDigest(digest, profile, None)


def _digest_path(path: Path) -> DatasetDigest:
    if path.is_file():
        digest = hashlib.sha256()
        _hash_file(digest, path)
        profile = {"type": "file", "size": path.stat().st_size}
        return DatasetDigest(f"sha256:{digest.hexdigest()}", profile, path.resolve().as_uri())
    if path.is_dir():
        digest = hashlib.sha256(b"directory\0")
        files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
        size = 0
        for relative, file in files:
            file_size = file.stat().st_size
            digest.update(f"{relative}\0{file_size}\0".encode())
            _hash_file(digest, file)
            size += file_size
        profile = {"type": "directory", "files": len(files), "size": size}
        return DatasetDigest(f"sha256:{digest.hexdigest()}", profile, path.resolve().as_uri())
    raise InvalidValueError(
        f"log_input: {str(path)!r} is not an existing file or directory; strings name "
        "files, so pass text to digest as bytes (text.encode())"
    )


def _hash_file(digest: Any, path: Path) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
