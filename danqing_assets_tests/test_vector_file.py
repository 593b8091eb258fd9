"""Embedding rows spilled to a scratch file: same values back, file removed, pages not held."""

import numpy as np
import pytest

from danqing_assets.curation.embed.vector_file import VectorFile, drop_resident_pages


def _rss_file_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


def test_rows_come_back_in_order_as_float16_and_the_file_goes(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 0, 5)]
    with VectorFile(8, directory=tmp_path) as vectors:
        for part in parts:
            vectors.append(part)
        out = vectors.array()
        assert out.shape == (8, 8) and out.dtype == np.float16 and not out.flags.writeable
        np.testing.assert_array_equal(out, np.concatenate(parts).astype(np.float16))
        path = vectors.path
        assert path.exists()
        with pytest.raises(RuntimeError):
            vectors.append(parts[0])
        del out
    assert not path.exists()


def test_wrong_dimension_is_refused(tmp_path):
    with VectorFile(4, directory=tmp_path) as vectors, pytest.raises(ValueError, match="dimension 4"):
        vectors.append(np.zeros((2, 5)))


def test_empty_file_reads_as_empty_array(tmp_path):
    with VectorFile(4, directory=tmp_path) as vectors:
        assert vectors.array().shape == (0, 4)


def test_dropping_pages_releases_what_reading_made_resident(tmp_path):
    with VectorFile(1024, directory=tmp_path) as vectors:
        for _ in range(16):  # 32 MiB of float16
            vectors.append(np.ones((1024, 1024), dtype=np.float16))
        rows = vectors.array()
        before = _rss_file_kb()
        assert float(rows[::64].astype(np.float32).sum()) == 256 * 1024  # touches every page
        touched = _rss_file_kb()
        assert touched - before > 24 * 1024
        assert drop_resident_pages(rows[10:20])  # a view finds its mapping
        assert _rss_file_kb() - before < 4 * 1024
        assert float(rows[-1].astype(np.float32).sum()) == 1024  # still readable afterwards
        del rows


def test_in_memory_and_writeable_arrays_are_left_alone():
    assert not drop_resident_pages(np.zeros((4, 4), dtype=np.float16))
    assert not drop_resident_pages([1, 2])
