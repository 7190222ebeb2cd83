"""Write an ``.npz`` whose big array is streamed batch by batch, atomically.

``np.savez`` needs every array in memory; a 10,000-sample run holds 14 GB of seismic data. Here
the seismic array is written straight into its zip entry as batches arrive (a ``.npy`` header with
the final shape, then raw C-order bytes), and the small arrays are added at the end. The file is
built under a temporary name in the destination folder and renamed only when complete.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ubdiff_onnx.runtime.atomic import make_public


class StreamingNpzWriter:
    def __init__(self, path: Path, stream_name: str, shape: tuple[int, ...], dtype=np.float32) -> None:
        self.path = Path(path)
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.stream_name = stream_name
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._entry = self._zip.open(f"{stream_name}.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._entry, header)
        self._rows = 0

    def append(self, batch: np.ndarray) -> None:
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        if batch.shape[1:] != self.shape[1:]:
            raise ValueError(f"batch shape {batch.shape} does not fit {self.shape}")
        self._entry.write(batch.tobytes())
        self._rows += batch.shape[0]

    def finish(self, **arrays: np.ndarray) -> Path:
        """Close the streamed entry (it must be complete), add the small arrays, rename into place."""
        if self._rows != self.shape[0]:
            raise ValueError(f"{self.stream_name}: wrote {self._rows} rows, expected {self.shape[0]}")
        self._entry.close()
        for name, value in arrays.items():
            with self._zip.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
        self._zip.close()
        make_public(self._tmp)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._entry.close()
            self._zip.close()
        except Exception:  # noqa: BLE001 - best effort: the file is deleted anyway
            pass
        self._tmp.unlink(missing_ok=True)
