"""The run directory: every file a run holds, named in this one place; everyone asks `RunDir` for paths.

    runs/<run>/config.json                  the settings of the training run plus what was resolved
    runs/<run>/checkpoints/last.ckpt        Lightning checkpoint (resume from here)
    runs/<run>/exported/backbone.pt (+.json) plain state_dict of the backbone and its metadata
    runs/<run>/loss.csv, epochs.csv         one row per optimizer step / per epoch (with the kNN monitor)
    runs/<run>/skipped_images.json          images training left out (damaged files)
    runs/<run>/dataset.json                 where the images of this run are (notebook 01)
    runs/<run>/embeddings/<name>.pt         embedding sets;   umap/<name>.npy   2-D maps
    runs/<run>/figures/*.png, interactive/*.html, metrics.json, notebooks/*.ipynb, pipeline.json, index.html

Only the standard library is imported: the notebooks' parameter checks use it before anything heavy loads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from embedlab.paths import local_copy, resolve_path

CONFIG = "config.json"
CHECKPOINT = "last.ckpt"
EXPORTED = "backbone.pt"
LOSS_LOG = "loss.csv"
EPOCH_LOG = "epochs.csv"
SKIPPED_IMAGES = "skipped_images.json"
METRICS = "metrics.json"
DATASET_INFO = "dataset.json"
PIPELINE_RECORD = "pipeline.json"
INDEX_PAGE = "index.html"
RESULTS_ARCHIVE = "results.zip"
ARCHIVED_THUMBNAILS = "thumbnails"  # an unpacked results archive's copy of the thumbnail cache
# The parts of a run that a published results archive carries (written by the course layer's pack_run).
PUBLISHED = ("exported", "embeddings", "umap", CONFIG, METRICS, DATASET_INFO, ARCHIVED_THUMBNAILS)


class MissingInputError(FileNotFoundError):
    """A file that an earlier notebook writes is missing; the message names that notebook."""


class RunDir:
    """Where each notebook and stage reads and writes inside one run directory (the only link between them)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.root = resolve_path(run_dir)
        self.config = self.root / CONFIG
        self.checkpoints_dir = self.root / "checkpoints"
        self.checkpoint = self.checkpoints_dir / CHECKPOINT
        self.exported_dir = self.root / "exported"
        self.exported = self.exported_dir / EXPORTED
        self.loss_log = self.root / LOSS_LOG
        self.epoch_log = self.root / EPOCH_LOG
        self.skipped_images = self.root / SKIPPED_IMAGES
        self.metrics = self.root / METRICS
        self.dataset_info = self.root / DATASET_INFO
        self.pipeline_record = self.root / PIPELINE_RECORD
        self.index_page = self.root / INDEX_PAGE
        self.results_archive = self.root / RESULTS_ARCHIVE
        self.archived_thumbnails = self.root / ARCHIVED_THUMBNAILS
        self.embeddings_dir = self.root / "embeddings"
        self.umap_dir = self.root / "umap"
        self.figures_dir = self.root / "figures"
        self.interactive_dir = self.root / "interactive"
        self.notebooks_dir = self.root / "notebooks"
        self.teacher_cache = self.root / "teachers"  # multi-teacher distillation: teachers' vectors, made once

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @classmethod
    def of(cls, file: str | os.PathLike[str]) -> RunDir:
        """The run directory that holds `file` (a loss log, config.json, metrics.json: files at the run's top)."""
        return cls(Path(file).resolve().parent)

    def embedding(self, name: str) -> Path:
        """Path of embedding set `name` (written by 03_embed_images)."""
        return self.embeddings_dir / f"{name}.pt"

    def umap(self, name: str) -> Path:
        """Path of the 2-D UMAP points of embedding set `name` (written by 04_visualize_umap)."""
        return self.umap_dir / f"{name}.npy"

    def figure(self, name: str) -> Path:
        """Path of a saved figure (PNG)."""
        return self.figures_dir / (name if name.endswith(".png") else f"{name}.png")

    def interactive(self, name: str) -> Path:
        """Path of an interactive HTML plot."""
        return self.interactive_dir / f"{name}.html"

    def embedding_names(self) -> list[str]:
        """Names of the embedding sets present, sorted."""
        return sorted(p.stem for p in self.embeddings_dir.glob("*.pt"))

    def read_config(self) -> dict[str, object]:
        """config.json as a dict ({} when the run has none yet or it is unreadable)."""
        try:
            return dict(json.loads(self.config.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return {}

    def dataset_record(self) -> dict[str, object]:
        """dataset.json as a dict ({} before notebook 01 or a results archive wrote it)."""
        if not self.dataset_info.is_file():
            return {}
        return dict(json.loads(self.dataset_info.read_text(encoding="utf-8")))

    def record_dataset(
        self,
        root: str | os.PathLike[str],
        *,
        dataset: str,
        thumbnail_size: int | None = None,
        thumbnails: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Remember the dataset root and where its thumbnail cache goes (default: next to the root; on Colab with
        Drive, on Drive) for the later notebooks of this run."""
        from embedlab._io import write_json

        root = Path(root).resolve()
        cache = Path(thumbnails).resolve() if thumbnails else root.parent / f"thumbnails-{thumbnail_size}"
        info = {
            "dataset": dataset,
            "root": str(root),
            "thumbnail_size": thumbnail_size,
            "thumbnails": str(cache) if thumbnail_size else None,
        }
        return write_json(self.dataset_info, info)

    def dataset_root(self) -> Path:
        """The dataset root recorded by 01_download_data (raises MissingInputError naming 01 when absent)."""
        info = json.loads(self.require(self.dataset_info, made_by="01_download_data").read_text(encoding="utf-8"))
        if not info.get("root"):  # a results archive brings thumbnails, not the dataset
            raise MissingInputError(
                f"{self.root} holds a results archive's thumbnails but not the dataset: run "
                f"notebooks/01_download_data.ipynb first with the same run_dir ({self.root}) and data_dir"
            )
        return self.require(Path(str(info["root"])), made_by="01_download_data")

    def has_images(self) -> bool:
        """True when the run's images are at hand: the dataset, its complete thumbnail cache (a fresh Colab runtime
        with the cache on Drive), or the thumbnails of a results archive."""
        return self.recorded_root() is not None or self.recorded_thumbnails() is not None

    def recorded_root(self) -> Path | None:
        """The recorded dataset root when it exists on this machine (an archive records none)."""
        root = self.dataset_record().get("root")
        return Path(str(root)) if root and Path(str(root)).is_dir() else None

    def recorded_thumbnails(self) -> Path | None:
        """A complete thumbnail cache of the run's images: the recorded one when it holds every image of the root
        (or when the root is gone: a fresh runtime, the cache on Drive), else a results archive's thumbnails."""
        info = self.dataset_record()
        root, size = info.get("root"), info.get("thumbnail_size")
        cache = info.get("thumbnails") or (Path(str(root)).parent / f"thumbnails-{size}" if root and size else None)
        if cache and Path(str(cache)).is_dir():
            raw = self.recorded_root()
            if raw is None or _same_files(raw, Path(str(cache))):
                return Path(str(cache))
        return self.archived_thumbnails if self.archived_thumbnails.is_dir() else None

    def image_root(self, image_size: int) -> Path:
        """The fastest complete copy of the run's images for `image_size`: the thumbnails when they are big enough
        (much faster to decode), else the raw images; without the raw images (a fresh runtime, a results archive),
        the thumbnails are all there is. Thumbnails on Google Drive are read from a local copy (`paths.local_copy`)."""
        root, thumbs = self.recorded_root(), self.recorded_thumbnails()
        if root is None:
            if thumbs is None:
                self.dataset_root()  # raises MissingInputError naming notebook 01
            return local_copy(thumbs)  # type: ignore[arg-type]
        size = self.dataset_record().get("thumbnail_size")
        return local_copy(thumbs) if thumbs is not None and size and image_size <= int(str(size)) else root

    def require(self, path: str | os.PathLike[str], made_by: str) -> Path:
        """Return `path` if it exists, else raise MissingInputError telling which notebook makes it."""
        target = Path(path)
        if not target.exists():
            raise MissingInputError(
                f"missing input {target}: run notebooks/{made_by}.ipynb first with the same run_dir "
                f"({self.root}) and data_dir"
            )
        return target


def _relative_files(folder: Path) -> set[str]:
    """Relative paths of the files in class subfolders of `folder`."""
    return {
        f"{d.name}/{f.name}"
        for d in folder.iterdir()
        if d.is_dir()
        for f in d.iterdir()
        if f.is_file() and not f.name.startswith(".")
    }


def _same_files(raw: Path, thumbs: Path) -> bool:
    """True when the thumbnail cache holds exactly the raw images (same relative names)."""
    return _relative_files(raw) == _relative_files(thumbs)
