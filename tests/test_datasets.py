"""The seeded 2-D data sets and loading user data from .npz and .csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from propscope.graph.datasets import GENERATORS, DataError, load_data, make_dataset

NAMES = list(GENERATORS)


@pytest.mark.parametrize("name", NAMES)
def test_seeded_and_deterministic(name: str) -> None:
    a = make_dataset(name, n=60, noise=0.2, seed=4)
    b = make_dataset(name, n=60, noise=0.2, seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    c = make_dataset(name, n=60, noise=0.2, seed=5)
    assert not np.array_equal(a.x, c.x), "another seed gives the same data"


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_labels(name: str) -> None:
    data = make_dataset(name, n=60, noise=0.1, seed=0, classes=3)
    _, task, description = GENERATORS[name]
    assert description and data.task == task and data.name == name
    features = 1 if name == "sine" else 2
    assert data.x.shape == (60, features) and data.x.dtype == np.float64
    assert np.isfinite(data.x).all()
    if task == "classification":
        assert data.y.shape == (60,) and data.y.dtype.kind == "i"
        assert data.y.min() >= 0 and data.classes == int(data.y.max()) + 1
        assert len(np.unique(data.y)) == data.classes >= 2, "every class appears"
    else:
        assert data.y.shape == (60, 1) and data.y.dtype == np.float64 and data.classes == 0
    assert set(data.batch()) == {"x", "y"} and data.test_batch() is None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_test_fraction(name: str, fraction: float) -> None:
    whole = make_dataset(name, n=40, noise=0.1, seed=1)
    split = make_dataset(name, n=40, noise=0.1, seed=1, test_fraction=fraction)
    assert split.x_test is not None and split.y_test is not None
    assert len(split.x_test) == len(split.y_test) == round(40 * fraction)
    assert len(split.x) + len(split.x_test) == 40 == len(split.y) + len(split.y_test)
    # the split is a partition of the same samples (rows matched as (x, y) pairs)
    rows = {tuple(np.append(x, y)) for x, y in zip(whole.x, whole.y, strict=True)}
    split_rows = [tuple(np.append(x, y)) for x, y in zip(np.concatenate([split.x, split.x_test]),
                                                            np.concatenate([split.y, split.y_test]), strict=True)]
    assert set(split_rows) == rows and len(split_rows) == len(rows)
    assert split.test_batch() is not None


def test_spiral_and_blobs_take_a_class_count() -> None:
    for name in ("spiral", "blobs"):
        assert make_dataset(name, n=50, classes=5).classes == 5


def test_xor_points() -> None:
    data = make_dataset("xor", n=4, noise=0.0)
    np.testing.assert_array_equal(data.x, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(data.y, [0, 1, 1, 0])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"name": "swirl"}, "unknown data set"), ({"name": "moons", "n": 0}, "at least one"),
     ({"name": "moons", "test_fraction": 1.0}, "test_fraction"),
     ({"name": "moons", "test_fraction": -0.1}, "test_fraction")],
)
def test_bad_generator_arguments(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        make_dataset(**kwargs)  # type: ignore[arg-type]


# -- loading ---------------------------------------------------------------------------------------
def test_load_npz(tmp_path: Path) -> None:
    x, y = np.arange(8.0).reshape(4, 2), np.array([[0.0], [1.0], [1.0], [0.0]])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    arrays = load_data(tmp_path / "d.npz")
    assert set(arrays) == {"x", "y"}
    np.testing.assert_array_equal(arrays["x"], x)
    np.testing.assert_array_equal(arrays["y"], y)


@pytest.mark.parametrize("header", ["", "a,b,target\n"])
def test_load_csv(tmp_path: Path, header: str) -> None:
    (tmp_path / "d.csv").write_text(header + "0,0,0\n0,1,1\n1,0,1\n\n1,1.5,0\n")
    arrays = load_data(str(tmp_path / "d.csv"))
    np.testing.assert_array_equal(arrays["x"], [[0, 0], [0, 1], [1, 0], [1, 1.5]])
    np.testing.assert_array_equal(arrays["y"], [[0], [1], [1], [0]])


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("0,0,0\n0,1\n", ("row 2", "2 columns", "expected 3", "ragged")),
        ("x,y\n0,1\n0,oops\n", ("row 2", "column 2", "'oops'", "not a number")),
        ("1\n2\n3\n", ("at least two columns", "got 1")),
        ("a,b\n", ("no data rows",)),
        ("", ("no data rows",)),
    ],
    ids=["ragged", "non-numeric", "one-column", "header-only", "empty"],
)
def test_bad_csv(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        load_data(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("missing.npz", None, "no such data file"),
        ("missing.csv", None, "no such data file"),
        ("text.npz", b"x,y\n1,2\n", "not a zip archive"),
        ("empty.npz", b"", "not a zip archive"),
    ],
)
def test_bad_data_files(tmp_path: Path, name: str, content: bytes | None, fragment: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=fragment):
        load_data(path)


def test_npz_without_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz")
    with pytest.raises(DataError, match="no arrays"):
        load_data(tmp_path / "d.npz")


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="not a readable"):
        load_data(tmp_path / "d.npz")
