"""Real photos that ship in installed packages, for benchmarks (never imports ``tests``).

A photo is named ``<source>/<file>``:

* ``skimage/...``  scikit-image's bundled ``skimage/data`` files (astronaut.png, chelsea.png, ...),
  read as files: ``skimage.data``'s loaders would fetch the non-bundled ones from the network;
* ``sklearn/...``  scikit-learn's ``sklearn/datasets/images`` (china.jpg, flower.jpg);
* ``darknet/...``  Debian's ``darknet`` package (``/usr/share/darknet/data``: dog.jpg, eagle.jpg,
  giraffe.jpg, horses.jpg, kite.jpg, person.jpg), present only where that package is installed.

The bytes are the files as shipped (PNG or JPEG), i.e. what an upload of them would be.
"""

from __future__ import annotations

from pathlib import Path

DARKNET_DATA = Path("/usr/share/darknet/data")


def source_dirs(darknet_dir: Path = DARKNET_DATA) -> dict[str, Path]:
    """Folder of each photo source (imports scikit-image and scikit-learn to find theirs)."""
    import skimage.data
    import sklearn.datasets

    return {
        "skimage": Path(skimage.data.__file__).resolve().parent,
        "sklearn": Path(sklearn.datasets.__file__).resolve().parent / "images",
        "darknet": darknet_dir,
    }


def package_photo_path(name: str, *, dirs: dict[str, Path] | None = None) -> Path | None:
    """The file behind ``<source>/<file>``, or None if that source or file is not installed."""
    source, _, file = name.partition("/")
    folder = (dirs or source_dirs()).get(source)
    if folder is None:
        raise ValueError(f"unknown photo source {source!r} in {name!r}; use skimage, sklearn or darknet")
    path = folder / file
    return path if path.is_file() else None


def package_photo(name: str, *, dirs: dict[str, Path] | None = None) -> bytes:
    """The bytes of ``<source>/<file>``; ``FileNotFoundError`` if it is not installed."""
    path = package_photo_path(name, dirs=dirs)
    if path is None:
        raise FileNotFoundError(f"package photo {name!r} is not installed here")
    return path.read_bytes()
