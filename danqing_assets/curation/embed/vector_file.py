"""Embedding rows spilled to a local file, so a snapshot's vectors never sit whole in process memory.

A snapshot's image embeddings (768-d float16: 1.5 KB a row, ~13 GB at DanQing's 8.5M pairs per snapshot)
are written part by part to a scratch file and read back through a read-only memory map. Searches
gather rows batch by batch (:mod:`..dedup.semantic`); :func:`drop_resident_pages` then unmaps the pages
read so far, so resident memory does not grow to the file: the kernel keeps them in its page cache
(reclaimable), the process does not hold them. Mind the granularity: a read fault may map a whole
page-cache folio (2 MiB on Linux 6.18 with ext4, measured), so a gather of scattered rows must be split
into parts that each map a bounded amount (``semantic._resident_parts``), or read rows with positioned
reads instead (``clip_filtered_pairs.in_pair_order``).
"""

from __future__ import annotations

import mmap
import os
import tempfile
from pathlib import Path

import numpy as np


class VectorFile:
    """Append float rows to a scratch file, then read them as one read-only n×d array.

    Use as a context manager: the file is removed on exit (and never outlives a crashed step beyond
    its scratch directory). ``append`` takes any n×dim float array (cast to ``dtype``).
    """

    def __init__(self, dim: int, *, dtype: np.dtype | type = np.float16, directory: str | os.PathLike | None = None) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim, self.dtype = dim, np.dtype(dtype)
        handle, name = tempfile.mkstemp(prefix="vectors-", suffix=".bin", dir=directory)
        self.path = Path(name)
        self._file = os.fdopen(handle, "wb")
        self.rows = 0
        self._map: mmap.mmap | None = None

    def append(self, matrix: np.ndarray) -> None:
        if self._file is None:
            raise RuntimeError("VectorFile is already open for reading")
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"expected rows of dimension {self.dim}, got shape {matrix.shape}")
        self._file.write(np.ascontiguousarray(matrix, dtype=self.dtype).tobytes())
        self.rows += matrix.shape[0]

    def array(self) -> np.ndarray:
        """The rows written so far, read-only and file-backed (no further appends)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.rows == 0:
            return np.zeros((0, self.dim), dtype=self.dtype)
        if self._map is None:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return np.frombuffer(self._map, dtype=self.dtype).reshape(self.rows, self.dim)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # an array still refers to it; the mapping goes with the last reference
                pass
            self._map = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> VectorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _backing_map(array: np.ndarray) -> mmap.mmap | None:
    base = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
    return None


def drop_resident_pages(array: np.ndarray) -> bool:
    """Unmap the pages of a read-only file-backed array from this process (they stay in the page cache).

    Returns whether anything was done: arrays not backed by a memory map, and writeable ones (whose
    pages may hold changes not in the file), are left alone.
    """
    if not isinstance(array, np.ndarray) or array.flags.writeable or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    backing = _backing_map(array)
    if backing is None or backing.closed:
        return False
    backing.madvise(mmap.MADV_DONTNEED)
    return True
