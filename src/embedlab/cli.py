"""The `embedlab` command: every tutorial step from a shell (download, train, embed, plot, compare, curate, run).

Each subcommand is a thin wrapper over the package functions the notebooks call. Errors in the input (a missing
file, a bad value) print one line, `embedlab: error: ...`, and exit with status 1; `--debug` shows the traceback.
Heavy imports (torch, umap) happen inside the commands, so `embedlab --help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROG = "embedlab"
EMBED_MODELS_HELP = "pca, a backbone name (resnet18, resnet34, resnet50, efficientnet_lite0) or a checkpoint path"
NPY_IMAGES = (".npy",)


class CommandError(Exception):
    """A command-line input problem; the message is shown as one line."""


# --------------------------------------------------------------------------------------------- helpers


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _workers(text: str) -> int | str:
    """argparse type: 'auto' or an integer >= 0."""
    return text if text == "auto" else _non_negative(text)


def _small_images(text: str) -> bool | str:
    """argparse type: auto / true / false."""
    lowered = text.lower()
    if lowered in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[lowered]
    raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")


def _say(message: str) -> None:
    """Print a result line to stdout (results go to stdout, progress bars to stderr)."""
    print(message, flush=True)


def _load(path: str) -> Any:
    """Load an embeddings file (.pt / .npy / .npz)."""
    from embedlab.embedding import load_embeddings

    if not Path(path).exists():
        raise FileNotFoundError(f"embeddings file not found: {path} (make one with `embedlab embed`)")
    try:
        return load_embeddings(path)
    except (ValueError, RuntimeError) as error:  # name the file when the message does not
        if str(path) in str(error):
            raise
        raise CommandError(f"{path} is not a usable embeddings file: {error}") from error


def _dataset_root(name_or_path: str, data_dir: str, limit: int | None, progress: bool) -> Path:
    """A dataset name (downloaded/prepared into data_dir) or an image folder -> the dataset root."""
    from embedlab import datasets

    if name_or_path not in datasets.DATASETS and not Path(name_or_path).exists():
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a dataset name ({', '.join(sorted(datasets.DATASETS))}) nor an existing folder"
        )
    return datasets.prepare(name_or_path, data_dir, limit=limit, progress=progress)


def _write_lines(path: str | None, lines: Sequence[str]) -> None:
    """Write lines to a file atomically, or to stdout when no path is given."""
    if path is None:
        for line in lines:
            _say(line)
        return
    from embedlab._io import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)
    print(f"wrote {len(lines)} lines to {path}", file=sys.stderr)


# --------------------------------------------------------------------------------------------- download / thumbnails


def cmd_download(args: argparse.Namespace) -> int:
    """Download (or prepare) a dataset and print its root folder."""
    root = _dataset_root(args.dataset, args.data_dir, args.limit, not args.quiet)
    _say(str(root))
    return 0


def cmd_thumbnails(args: argparse.Namespace) -> int:
    """Build the thumbnail cache of a dataset."""
    from embedlab import datasets

    root = _dataset_root(args.dataset, args.data_dir, None, not args.quiet)
    report = datasets.make_thumbnails(root, args.size, out_root=args.output, workers=args.workers,
                                      progress=not args.quiet)
    _say(f"{report.out_root}: {report.written} written, {report.skipped} up to date, {len(report.failed)} failed "
         f"({report.images_per_second:.0f} images/s)")
    for relpath, reason in report.failed[:10]:
        print(f"  could not read {relpath}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1


# --------------------------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    """Train a self-supervised model on a dataset."""
    from embedlab import training

    root = _dataset_root(args.data, args.data_dir, args.limit, not args.quiet)
    result = training.train(
        root, args.run_dir, method=args.method, backbone=args.backbone, init=args.init,
        small_images=args.small_images, layers=args.layers, augment=args.augment, epochs=args.epochs,
        batch_size=args.batch_size, image_size=args.image_size, learning_rate=args.learning_rate,
        precision=args.precision, accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
        strategy=args.strategy, num_workers=args.num_workers, seed=args.seed, knn_monitor=not args.no_knn,
        progress=not args.quiet,
    )
    _say(f"trained {result.epochs} epochs in {result.seconds:.0f} s ({result.images_per_second:.1f} images/s), "
         f"final loss {result.final_loss:.3f}")
    _say(f"checkpoint: {result.checkpoint}")
    _say(f"exported backbone: {result.exported}")
    return 0


# --------------------------------------------------------------------------------------------- embed


class ArrayImages:
    """Images from a .npy array (N,H,W) or (N,H,W,C), uint8 or float in [0, 1], written out as an image folder.

    embed() reads image folders, so the array becomes PNGs in a temporary folder (one subfolder per label);
    `restore` then puts the embeddings back in row order with the row numbers as filenames.
    """

    def __init__(self, path: str | Path, labels: Any = None) -> None:
        import numpy as np

        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError) as error:
            raise CommandError(f"{path} is not a readable .npy array ({error})") from None
        if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3, 4)) or len(array) == 0:
            raise CommandError(
                f"{path} holds an array of shape {array.shape}; expected images (N, H, W) or (N, H, W, C) with "
                "C in 1, 3, 4"
            )
        if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
            raise CommandError(f"{path} has dtype {array.dtype}; expected uint8 or float images in [0, 1]")
        if labels is not None and len(labels) != len(array):
            raise CommandError(f"{len(labels)} labels for {len(array)} images in {path}")
        self.array = array
        self.path = Path(path)
        self.labels = None if labels is None else np.asarray(labels).astype(np.int64).reshape(-1)

    def write_folder(self, folder: Path, progress: bool) -> Path:
        """Write every image as <folder>/<label or 'images'>/<row>.png and return the folder."""
        import numpy as np
        from PIL import Image
        from tqdm.auto import tqdm

        for row in tqdm(range(len(self.array)), desc=f"unpack {self.path.name}", disable=not progress, unit="img"):
            image = np.asarray(self.array[row])
            if image.dtype != np.uint8:
                image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            target = folder / ("images" if self.labels is None else str(self.labels[row])) / f"{row:08d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).convert("RGB").save(target)
        return folder

    def restore(self, emb: Any) -> Any:
        """Embeddings in row order, filenames = row numbers, labels/classes from the given labels (or none)."""
        import numpy as np

        from embedlab.embedding import Embeddings

        rows = np.asarray([int(Path(name).stem) for name in emb.filenames])
        order = np.argsort(rows)
        width = len(str(len(self.array) - 1))
        labels = class_names = None
        if self.labels is not None:  # only the rows embedded (--limit may have skipped some)
            values = np.unique(self.labels)
            labels = np.searchsorted(values, self.labels[rows[order]])
            class_names = [str(v) for v in values]
        meta = {**emb.meta, "data_root": str(self.path)}
        return Embeddings(emb.vectors[order], [f"{r:0{width}d}" for r in rows[order]], labels, class_names,
                          emb.name, meta)


def _embed_input(args: argparse.Namespace) -> tuple[Any, ArrayImages | None]:
    """INPUT as a dataset root folder, plus the ArrayImages when it was a .npy array."""
    import numpy as np

    source = Path(args.input)
    if source.suffix.lower() in NPY_IMAGES:
        if not source.is_file():
            raise FileNotFoundError(f"input array not found: {source}")
        labels = None
        if args.labels:
            if not Path(args.labels).is_file():
                raise FileNotFoundError(f"labels file not found: {args.labels}")
            labels = np.load(args.labels, allow_pickle=False).reshape(-1)
        return source, ArrayImages(source, labels)
    if args.labels:
        raise CommandError("--labels is only for a .npy INPUT (folders take their labels from class subfolders)")
    return _dataset_root(args.input, args.data_dir, None, not args.quiet), None


def _check_model_option(args: argparse.Namespace) -> None:
    """Reject a bad --model / --layers combination before any work is done."""
    from embedlab import models

    if args.model == "pca" or args.model in models.BACKBONE_NAMES:
        if args.model == "pca" and args.layers is not None:
            raise CommandError("--layers applies to a backbone, not to --model pca")
        return
    if not Path(args.model).exists():
        raise CommandError(f"--model {args.model!r} is not {EMBED_MODELS_HELP} (no such file)")
    if args.layers is not None:
        raise CommandError("--layers applies to a backbone name; a checkpoint keeps the layers it was trained with")


def _embed_model(args: argparse.Namespace, data: Any) -> Any:
    """Run the chosen model over the input and return Embeddings (PCA dims applied for non-PCA models)."""
    from embedlab import embedding, models

    name = args.name or Path(args.output).stem
    if args.model == "pca":
        emb = embedding.embed_pca(data, dimensions=args.dimensions or 50, image_size=args.image_size or 32,
                                  limit=args.limit, seed=args.seed, name=name, progress=not args.quiet)
        if emb.dim < (args.dimensions or 50):
            print(f"note: PCA kept {emb.dim} components: there are fewer images or pixels than "
                  f"{args.dimensions or 50}", file=sys.stderr)
        return emb
    import torch

    torch.manual_seed(args.seed)  # random-init weights are reproducible too
    model: Any = args.model
    if args.model in models.BACKBONE_NAMES:
        weights = None if args.weights == "random" else args.weights
        model = models.create_backbone(args.model, weights, small_images=args.small_images, layers=args.layers)
    emb = embedding.embed(data, model, weights=None if args.weights == "random" else args.weights,
                          image_size=args.image_size, batch_size=args.batch_size, device=args.device,
                          limit=args.limit, name=name, progress=not args.quiet)
    if args.dimensions:
        emb = _pca_reduce(emb, args.dimensions, args.seed)
    return emb


def _pca_reduce(emb: Any, dimensions: int, seed: int) -> Any:
    """Project embeddings to `dimensions` with PCA (fitted on these embeddings)."""
    import torch
    from sklearn.decomposition import PCA

    from embedlab.embedding import Embeddings

    vectors = emb.numpy()
    if dimensions > min(vectors.shape):
        raise CommandError(f"--dimensions {dimensions} is more than min(images, features) = {min(vectors.shape)}")
    reduced = PCA(n_components=dimensions, random_state=seed).fit_transform(vectors)
    meta = {**emb.meta, "pca_dimensions": dimensions, "embedding_dim_before_pca": int(vectors.shape[1])}
    return Embeddings(torch.from_numpy(reduced.astype("float32")), emb.filenames, emb.labels, emb.class_names,
                      emb.name, meta)


def _plot_embeddings(emb: Any, path: Path, seed: int, quiet: bool) -> Path:
    """Class-coloured 2-D plot: the vectors themselves when 2-D, else UMAP."""
    import numpy as np

    from embedlab import plotting, projection

    vectors = emb.numpy()
    if vectors.shape[1] == 2:
        points, how = vectors, "2-D embedding"
    else:
        if not quiet:
            print("projecting to 2-D with UMAP (the first call compiles numba code: ~30 s)", file=sys.stderr)
        points, how = projection.project(vectors, "umap", seed=seed), "UMAP"
    labels = emb.labels if emb.labels is not None else np.zeros(len(emb), dtype=int)
    classes = emb.class_names if emb.labels is not None else ["images"]
    fig = plotting.scatter(points, labels, classes, title=f"{emb.name} ({how}, {len(emb)} images)")
    return plotting.save_figure(fig, path)


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed images (folder, .npy array or named dataset) and save the vectors."""
    output = Path(args.output)
    if output.suffix.lower() not in (".pt", ".npy", ".npz"):
        raise CommandError(f"OUTPUT {output} must end in .pt, .npy or .npz")
    if args.compress and output.suffix.lower() != ".npz":
        raise CommandError("--compress writes a compressed .npz: give an OUTPUT ending in .npz")
    if args.dimensions is not None and args.plot and args.dimensions < 2:
        raise CommandError("--plot needs at least 2 dimensions")
    _check_model_option(args)
    data, array = _embed_input(args)
    if array is None:
        emb = _embed_model(args, data)
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="embedlab-npy-") as folder:
            emb = array.restore(_embed_model(args, array.write_folder(Path(folder), not args.quiet)))
    emb.save(output, compress=args.compress)
    _say(f"wrote {len(emb)} x {emb.dim} embeddings to {output}")
    if args.plot:
        figure = _plot_embeddings(emb, output.with_suffix(".png"), args.seed, args.quiet)
        _say(f"wrote plot {figure}")
    return 0


# --------------------------------------------------------------------------------------------- umap / compare


def _umap_dir(embeddings_path: Path, output_dir: str | None) -> Path:
    """Default output: run_dir/umap for run_dir/embeddings/<name>.pt, else the embeddings' own folder."""
    if output_dir:
        return Path(output_dir)
    parent = embeddings_path.parent
    return parent.parent / "umap" if parent.name == "embeddings" else parent


def cmd_umap(args: argparse.Namespace) -> int:
    """Project embeddings to 2-D, save the points and a class-coloured figure (and an interactive HTML)."""
    import numpy as np

    from embedlab import plotting, projection

    for path_text in args.embeddings:
        path = Path(path_text)
        emb = _load(path_text)
        out = _umap_dir(path, args.output_dir)
        points = projection.project(emb.numpy(), args.method, seed=args.seed, n_neighbors=args.n_neighbors,
                                    min_dist=args.min_dist)
        stem = path.stem if args.method == "umap" else f"{path.stem}-{args.method}"
        saved = projection.save_points(points, out / f"{stem}.npy")
        labels = emb.labels if emb.labels is not None else np.zeros(len(emb), dtype=int)
        classes = emb.class_names if emb.labels is not None else ["images"]
        figure = plotting.save_figure(plotting.scatter(points, labels, classes, title=f"{emb.name} ({args.method})"),
                                      out / f"{stem}.png")
        _say(f"{saved}\n{figure}")
        if args.image_root:
            html = plotting.interactive_scatter(points, emb.filenames, labels, classes, args.image_root,
                                                out / f"{stem}.html", title=f"{emb.name} ({args.method})")
            _say(str(html))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Print kNN / linear-probe / cluster scores of several embedding sets, best first."""
    from embedlab import evaluation

    loaded = {}
    for path in args.embeddings:
        emb = _load(path)
        key = emb.name or Path(path).stem
        loaded[key if key not in loaded else Path(path).stem] = emb
    table = evaluation.compare(loaded, k=args.k, seed=args.seed)
    _say(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.output:
        _save_table(table, Path(args.output))
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _save_table(table: Any, path: Path) -> None:
    """Save a DataFrame as .csv, .json or .md (atomically)."""
    from embedlab._io import atomic_open

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json", ".md"):
        raise CommandError(f"--output {path} must end in .csv, .json or .md")
    with atomic_open(path, "w", encoding="utf-8") as handle:
        if suffix == ".csv":
            table.to_csv(handle, index=False)
        elif suffix == ".json":
            table.to_json(handle, orient="records", indent=2)
        else:
            handle.write(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))


def _has_tabulate() -> bool:
    """pandas' to_markdown needs the optional tabulate package."""
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------------- curation


def cmd_select(args: argparse.Namespace) -> int:
    """Pick a diverse subset (farthest-point sampling) and list its filenames."""
    from embedlab import curation

    emb = _load(args.embeddings)
    picked = curation.select_diverse(emb, args.n, seed=args.seed, progress=not args.quiet)
    lines = [emb.filenames[i] for i in picked]
    _write_lines(args.output, lines)
    if emb.labels is not None and not args.quiet:
        covered = len({int(emb.labels[i]) for i in picked})
        print(f"the {args.n} images cover {covered} of {len(set(emb.labels.tolist()))} classes", file=sys.stderr)
    return 0


def cmd_neighbors(args: argparse.Namespace) -> int:
    """Print the k nearest neighbours of an image (index, filename or image file)."""
    from embedlab import curation

    emb = _load(args.embeddings)
    query: Any = int(args.query) if args.query.lstrip("-").isdigit() else args.query
    found = curation.nearest_neighbors(emb, query, k=args.k, model=args.model)
    _say(found.table(0).to_string(index=False))
    return 0


def cmd_outliers(args: argparse.Namespace) -> int:
    """List the most unusual images (largest distance to their k-th neighbour)."""
    from embedlab import curation

    emb = _load(args.embeddings)
    scores = curation.outlier_scores(emb, k=args.k, progress=not args.quiet)
    order = scores.argsort()[::-1][: args.n]
    _write_lines(args.output, [f"{scores[i]:.4f}\t{emb.filenames[i]}" for i in order])
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    """List groups of near-duplicate images (cosine similarity >= threshold), one group per line."""
    from embedlab import curation

    emb = _load(args.embeddings)
    groups = curation.near_duplicates(emb, threshold=args.threshold, progress=not args.quiet)
    _write_lines(args.output, ["\t".join(emb.filenames[i] for i in group) for group in groups])
    if not args.quiet:
        print(f"{len(groups)} groups, {sum(len(g) for g in groups)} images", file=sys.stderr)
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """Train a classifier (backbone + linear head) on a labeled dataset; print accuracy vs the linear probe."""
    from embedlab import finetune

    root = _dataset_root(args.data, args.data_dir, args.limit, not args.quiet)
    result = finetune.train_classifier(args.backbone, root, mode=args.mode, epochs=args.epochs,
                                       batch_size=args.batch_size, learning_rate=args.learning_rate,
                                       image_size=args.image_size, seed=args.seed, device=args.device,
                                       progress=not args.quiet)
    _say(result.summary())
    if args.save:
        import torch

        from embedlab._io import atomic_path

        with atomic_path(args.save) as tmp:
            torch.save(result.model.state_dict(), tmp)
        _say(f"wrote classifier weights to {args.save}")
    return 0


# --------------------------------------------------------------------------------------------- pipeline


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """NAME=VALUE pairs, values parsed as YAML (so 3 is an int, true a bool, null None)."""
    import yaml

    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"-p expects NAME=VALUE, got {pair!r}")
        try:
            overrides[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            overrides[name.strip()] = value
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    """Run all notebooks in order with a parameter set (papermill) and print the index page."""
    from embedlab import pipeline

    index = pipeline.run_pipeline(args.params, run_dir=args.run_dir, notebooks=args.notebooks or None,
                                  overrides=_parse_overrides(args.param) or None, progress=not args.quiet)
    _say(f"done: open {index}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole tutorial on the embedded dataset, CPU-sized (= run --params demo)."""
    args.params, args.notebooks = "demo", None
    return cmd_run(args)


# --------------------------------------------------------------------------------------------- parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command takes."""
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    """Where named datasets live."""
    parser.add_argument("--data-dir", default="data", help="folder for named datasets (default: data)")


def _parser_download(sub: Any) -> None:
    p = sub.add_parser("download", help="download and prepare a dataset",
                       description="Download, verify and extract a dataset (aid, eurosat, ucmerced) or write the "
                       "embedded fashion-mnist; prints the dataset root (class subfolders). Resumes partial downloads.")
    p.add_argument("dataset", help="aid, eurosat, ucmerced, fashion-mnist, or an image folder to validate")
    _add_data_dir(p)
    p.add_argument("--limit", type=_positive, help="images per class (fashion-mnist subsets)")
    p.set_defaults(func=cmd_download)


def _parser_thumbnails(sub: Any) -> None:
    p = sub.add_parser("thumbnails", help="build the thumbnail cache",
                       description="Write resized copies (shorter side SIZE px) of every image, same relative paths.")
    p.add_argument("dataset", help="dataset name or dataset root folder")
    _add_data_dir(p)
    p.add_argument("--size", type=_positive, default=64, help="thumbnail size in pixels (default: 64)")
    p.add_argument("--output", help="output folder (default: <dataset>/thumbnails-SIZE)")
    p.add_argument("--workers", type=_positive, help="processes (default: CPU count)")
    p.set_defaults(func=cmd_thumbnails)


def _parser_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a self-supervised model",
                       description="Train SimCLR (or another method) on the unlabeled images; writes "
                       "RUN_DIR/checkpoints/last.ckpt and RUN_DIR/exported/backbone.pt. Re-running resumes.")
    p.add_argument("data", help="dataset name or image folder")
    p.add_argument("run_dir", help="run directory for checkpoints, exported backbone and logs")
    _add_data_dir(p)
    p.add_argument("--method", default="simclr", help="simclr, moco or byol (default: simclr)")
    p.add_argument("--backbone", default="resnet18", help="resnet18, resnet34, resnet50, efficientnet_lite0")
    p.add_argument("--init", choices=["imagenet"], help="start from ImageNet weights (default: random)")
    p.add_argument("--small-images", type=_small_images, default="auto", help="auto, true or false: CIFAR-style stem")
    p.add_argument("--layers", type=_positive, help="keep only the first N stages/blocks")
    p.add_argument("--augment", default="natural", help="natural, aerial or grayscale augmentation preset")
    p.add_argument("--epochs", type=_positive, default=10)
    p.add_argument("--batch-size", type=_positive, default=128)
    p.add_argument("--image-size", type=_positive, default=64)
    p.add_argument("--learning-rate", type=float, help="default: scaled with the batch size")
    p.add_argument("--limit", type=_positive, help="images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="auto")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default=1, type=lambda v: v if not v.isdigit() else int(v))
    p.add_argument("--num-nodes", type=_positive, default=1)
    p.add_argument("--strategy", default="auto")
    p.add_argument("--num-workers", type=_workers, default="auto")
    p.add_argument("--no-knn", action="store_true", help="skip the kNN accuracy monitor after each epoch")
    p.set_defaults(func=cmd_train)


def _parser_embed(sub: Any) -> None:
    p = sub.add_parser("embed", help="embed images into vectors",
                       description="Embed every image of INPUT and save the vectors, filenames and labels to OUTPUT "
                       "(.pt, .npy + .json sidecar, or .npz). INPUT is an image folder (class subfolders), a .npy "
                       "array of images (N,H,W) or (N,H,W,C), uint8 or float in [0, 1], or a dataset name "
                       "(fashion-mnist, aid, ...).",
                       epilog="examples:\n  embedlab embed images.npy out.npz --model pca --dimensions 2 --plot\n"
                       "  embedlab embed fashion-mnist fm.pt --model resnet18 --weights random --image-size 32\n"
                       "  embedlab embed data/aid/raw aid.pt --model runs/aid/exported/backbone.pt",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="image folder, .npy image array, or dataset name")
    p.add_argument("output", help="output file: .pt, .npy or .npz")
    p.add_argument("--model", default="pca", help=f"{EMBED_MODELS_HELP} (default: pca)")
    p.add_argument("--weights", default="imagenet", choices=["imagenet", "random"],
                   help="weights for a backbone name (default: imagenet; needs the weights file offline)")
    p.add_argument("--dimensions", type=_positive,
                   help="output dimensions: PCA components for --model pca (default 50); for other models the "
                   "embeddings are projected with PCA to N dimensions after embedding (default: keep all)")
    p.add_argument("--layers", type=_positive, help="truncate a named backbone after N stages (ResNet 1-4)")
    p.add_argument("--small-images", action="store_true", help="CIFAR-style stem for a named backbone (<= 64 px)")
    p.add_argument("--image-size", type=_positive,
                   help="resize to this size (default: the size stored with a checkpoint, 224 for names, 32 for pca)")
    p.add_argument("--labels", help="a .npy of integer labels for a .npy INPUT (colours in --plot)")
    p.add_argument("--limit", type=_positive, help="images per class")
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--compress", action="store_true", help="compressed .npz (OUTPUT must end in .npz)")
    p.add_argument("--plot", action="store_true",
                   help="also write OUTPUT.png: a class-coloured 2-D plot (the vectors when --dimensions 2, else UMAP)")
    p.add_argument("--name", help="name stored with the embeddings (default: OUTPUT's stem)")
    p.add_argument("--seed", type=int, default=0, help="seed for PCA / UMAP / random-init weights (default: 0)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_embed)


def _parser_umap(sub: Any) -> None:
    p = sub.add_parser("umap", help="2-D projection, figure and interactive HTML",
                       description="Reduce embeddings to 2-D (UMAP by default) and save <name>.npy and <name>.png "
                       "(in RUN_DIR/umap for RUN_DIR/embeddings/<name>.pt); with --image-root also <name>.html, an "
                       "interactive plot that shows each image on hover.")
    p.add_argument("embeddings", nargs="+", help="embeddings files (.pt/.npy/.npz)")
    p.add_argument("--output-dir", help="where to write (default: see above)")
    p.add_argument("--method", default="umap", choices=["umap", "pca", "tsne"])
    p.add_argument("--n-neighbors", type=_positive, default=15)
    p.add_argument("--min-dist", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-root", help="dataset root (or thumbnails folder) for the interactive HTML")
    p.set_defaults(func=cmd_umap)


def _parser_compare(sub: Any) -> None:
    p = sub.add_parser("compare", help="kNN / linear-probe / clustering scores side by side",
                       description="Score several embedding sets of the same labeled images: kNN accuracy, linear "
                       "probe accuracy and k-means NMI, best first.")
    p.add_argument("embeddings", nargs="+", help="embeddings files with labels")
    p.add_argument("--k", type=_positive, default=20, help="neighbours for kNN accuracy (default: 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="also save the table (.csv, .json or .md)")
    p.set_defaults(func=cmd_compare)


def _parser_curation(sub: Any) -> None:
    p = sub.add_parser("select", help="pick a diverse subset (e.g. what to label first)",
                       description="Pick N images that cover the embedding space (greedy farthest-point / k-center "
                       "on cosine distance) and list their filenames, in the order picked.")
    p.add_argument("embeddings", help="embeddings file")
    p.add_argument("--n", type=_positive, required=True, help="how many images to pick")
    p.add_argument("--seed", type=int, default=0, help="chooses the first image (default: 0)")
    p.add_argument("--output", help="write the filenames here (default: stdout)")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("neighbors", help="most similar images to one image",
                       description="Print the K nearest neighbours (cosine distance) of QUERY: an image index, an "
                       "embedded filename, or a new image file (needs --model).")
    p.add_argument("embeddings", help="embeddings file")
    p.add_argument("query", help="index, filename (Class/file.png) or path of a new image")
    p.add_argument("--k", type=_positive, default=8)
    p.add_argument("--model", help="backbone/checkpoint that made the embeddings (to embed a new image)")
    p.set_defaults(func=cmd_neighbors)

    p = sub.add_parser("outliers", help="most unusual images",
                       description="List the N images farthest from their K-th nearest neighbour (score, filename).")
    p.add_argument("embeddings", help="embeddings file")
    p.add_argument("--n", type=_positive, default=20)
    p.add_argument("--k", type=_positive, default=5)
    p.add_argument("--output", help="write here (default: stdout)")
    p.set_defaults(func=cmd_outliers)

    p = sub.add_parser("duplicates", help="groups of near-duplicate images",
                       description="Group images with cosine similarity >= THRESHOLD (transitively); one group per "
                       "line, tab-separated filenames, largest groups first.")
    p.add_argument("embeddings", help="embeddings file")
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--output", help="write here (default: stdout)")
    p.set_defaults(func=cmd_duplicates)


def _parser_classify(sub: Any) -> None:
    p = sub.add_parser("classify", help="train a classifier on the exported backbone",
                       description="Backbone (RUN_DIR/exported/backbone.pt, a .pt or a .ckpt) + linear head, trained "
                       "on a labeled dataset; prints held-out accuracy next to the frozen-embedding linear probe.")
    p.add_argument("backbone", help="run directory, exported backbone.pt or checkpoint")
    p.add_argument("data", help="labeled dataset name or folder")
    _add_data_dir(p)
    p.add_argument("--mode", default="frozen", choices=["frozen", "finetune"],
                   help="frozen: train the head only; finetune: all weights (default: frozen)")
    p.add_argument("--epochs", type=_positive, help="default: 50 (frozen, cheap) / 2 (finetune)")
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--image-size", type=_positive, help="default: the backbone's training size")
    p.add_argument("--limit", type=_positive, help="images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--save", help="save the classifier's state_dict here (.pt)")
    p.set_defaults(func=cmd_classify)


def _parser_pipeline(sub: Any) -> None:
    p = sub.add_parser("run", help="run the notebooks in order with a parameter set",
                       description="Run notebooks 00-06 with papermill and a parameter set (demo, classroom, full, "
                       "or a YAML file) into RUN_DIR/notebooks, and write an index page.")
    p.add_argument("--params", "-f", default="demo", help="demo, classroom, full or a YAML file (default: demo)")
    p.add_argument("--run-dir", help="override the run directory of the parameter set")
    p.add_argument("--notebooks", nargs="+", help="only these notebooks (names or numbers)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override one parameter (repeatable), e.g. -p epochs=5")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the whole tutorial, offline and CPU-sized",
                       description="Run every notebook with the demo parameters (the embedded fashion-mnist, small "
                       "and fast); the same as `embedlab run --params demo`.")
    p.add_argument("--run-dir", help="override the run directory")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override one parameter (repeatable)")
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with one subcommand per step."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train, embed, visualize and compare self-supervised image embeddings. "
        "`embedlab demo` runs the whole tutorial offline.",
    )
    from embedlab import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_parser_download, _parser_thumbnails, _parser_train, _parser_embed, _parser_umap, _parser_compare,
                _parser_curation, _parser_classify, _parser_pipeline):
        add(sub)
    for choice in sub.choices.values():
        _add_common(choice)
    return parser


def _is_input_error(error: BaseException) -> bool:
    """True for errors about the user's input (shown as one line): our own error classes, OSError, ValueError."""
    return (
        isinstance(error, (CommandError, OSError, ValueError))
        or type(error).__module__.startswith("embedlab.")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `embedlab` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("EMBEDLAB_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug or not _is_input_error(error):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
