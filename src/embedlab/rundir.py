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

from embedlab.settings import resolve_path

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
# The parts of a run that a published results archive carries (see embedlab.workflow.pack_run).
PUBLISHED = ("exported", "embeddings", "umap", CONFIG)


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
        self.embeddings_dir = self.root / "embeddings"
        self.umap_dir = self.root / "umap"
        self.figures_dir = self.root / "figures"
        self.interactive_dir = self.root / "interactive"
        self.notebooks_dir = self.root / "notebooks"

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

    def record_dataset(self, root: str | os.PathLike[str], *, dataset: str, thumbnail_size: int | None = None) -> Path:
        """Remember the dataset root (and thumbnail folder) for the later notebooks of this run."""
        from embedlab._io import write_json

        info = {"dataset": dataset, "root": str(Path(root).resolve()), "thumbnail_size": thumbnail_size}
        return write_json(self.dataset_info, info)

    def dataset_root(self) -> Path:
        """The dataset root recorded by 01_download_data (raises MissingInputError naming 01 when absent)."""
        info = json.loads(self.require(self.dataset_info, made_by="01_download_data").read_text(encoding="utf-8"))
        return self.require(Path(info["root"]), made_by="01_download_data")

    def image_root(self, image_size: int) -> Path:
        """Thumbnails when they are complete and big enough for `image_size` (much faster to decode), else raw."""
        root = self.dataset_root()
        info = json.loads(self.dataset_info.read_text(encoding="utf-8"))
        size = info.get("thumbnail_size")
        if not size or image_size > size:
            return root
        thumbs = root.parent / f"thumbnails-{size}"
        return thumbs if thumbs.is_dir() and _same_files(root, thumbs) else root

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
