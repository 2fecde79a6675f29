"""Commands that read saved embeddings: umap, compare, select, neighbors, outliers, duplicates."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from embedlab.cli.common import CommandError, _load, _say, _write_lines, check_apart, check_output, settings_from
from embedlab.rundir import RunDir
from embedlab.settings import CompareSettings, CurationSettings, ProjectionSettings


def _umap_dir(embeddings_path: Path, output_dir: str | None) -> Path:
    """Default output: the run's umap folder for <run>/embeddings/<name>.pt, else the embeddings' own folder."""
    if output_dir:
        return Path(output_dir)
    parent = embeddings_path.resolve().parent
    run = RunDir(parent.parent)
    return run.umap_dir if parent == run.embeddings_dir else embeddings_path.parent


def cmd_umap(args: argparse.Namespace) -> int:
    """Project embeddings to 2-D, save the points and a class-coloured figure (and an interactive HTML)."""
    import numpy as np

    from embedlab import plotting, projection

    settings = settings_from(args, ProjectionSettings)
    method = settings.projection
    if args.image_root and not Path(args.image_root).expanduser().is_dir():  # before any projection, not after
        raise CommandError(f"--image-root {args.image_root} is not a folder (give the dataset root or thumbnails)")
    for path_text in args.embeddings:  # every output folder, before any projection
        check_output(_umap_dir(Path(path_text), args.output_dir), "--output-dir", folder=True)
    for path_text in args.embeddings:
        path = Path(path_text)
        emb = _load(path_text)
        out = _umap_dir(path, args.output_dir)
        projector = projection.Projector(name=path.stem, **settings.projector_args()).fit(emb.numpy())
        points = projector.points_
        stem = path.stem if method == "umap" else f"{path.stem}-{method}"
        saved = projector.save(out / f"{stem}.npy")
        labels = emb.labels if emb.labels is not None else np.zeros(len(emb), dtype=int)
        classes = emb.class_names if emb.labels is not None else ["images"]
        figure = plotting.save_figure(
            plotting.scatter(points, labels, classes, title=f"{emb.name} ({method})"), out / f"{stem}.png"
        )
        _say(f"{saved}\n{figure}")
        if args.image_root:
            html = plotting.interactive_scatter(
                points,
                emb.filenames,
                labels,
                classes,
                args.image_root,
                out / f"{stem}.html",
                title=f"{emb.name} ({method})",
            )
            _say(str(html))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Print kNN / linear-probe / cluster scores of several embedding sets, best first."""
    from embedlab.course import comparison

    settings = settings_from(args, CompareSettings)
    if args.output:  # checked before the scoring, not after it
        _table_suffix(Path(args.output))
        check_output(args.output, "--output")
        check_apart(("--output", args.output), *(("EMBEDDINGS", path) for path in args.embeddings))
    loaded = {}
    for path in args.embeddings:
        emb = _load(path)
        key = emb.name or Path(path).stem
        loaded[key if key not in loaded else Path(path).stem] = emb
    table = comparison.compare(loaded, k=settings.knn_k, seed=settings.seed)
    _say(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.output:
        _save_table(table, Path(args.output))
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _table_suffix(path: Path) -> str:
    """The table format of --output: .csv, .json or .md."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json", ".md"):
        raise CommandError(f"--output {path} must end in .csv, .json or .md")
    return suffix


def _save_table(table: Any, path: Path) -> None:
    """Save a DataFrame as .csv, .json or .md (atomically)."""
    from embedlab._io import atomic_open

    suffix = _table_suffix(path)
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


def cmd_select(args: argparse.Namespace) -> int:
    """Pick a diverse subset (farthest-point sampling) and list its filenames."""
    from embedlab import curation

    settings = settings_from(args, CurationSettings)
    if args.output:
        check_output(args.output, "--output")
        check_apart(("--output", args.output), ("EMBEDDINGS", args.embeddings))
    emb = _load(args.embeddings)
    picked = curation.select_diverse(emb, settings.subset_size, seed=settings.seed, progress=not args.quiet)
    lines = [emb.filenames[i] for i in picked]
    _write_lines(args.output, lines)
    if emb.labels is not None and not args.quiet:
        covered = len({int(emb.labels[i]) for i in picked})
        print(f"the {len(picked)} images cover {covered} of {len(set(emb.labels.tolist()))} classes", file=sys.stderr)
    return 0


def _embedded_name(query: str, filenames: list[str]) -> bool:
    """Whether QUERY names an embedded image: exactly, or as a path ending in exactly one embedded filename."""
    text = query.replace("\\", "/")
    return text in filenames or sum(text.endswith("/" + name) for name in filenames) == 1


def _neighbors_query(args: argparse.Namespace, emb: Any, query: Any) -> tuple[Any, Any]:
    """(query, model) for curation.nearest_neighbors. With --model, an image file is always embedded with it (also
    one whose path ends in an embedded filename: the user asked for the model); the model is loaded here, so a
    corrupt file fails in one line. Without --model, a file that is not embedded is refused."""
    is_file = isinstance(query, str) and Path(query).is_file()
    if args.model is None:
        if is_file and not _embedded_name(query, emb.filenames):
            raise CommandError(
                f"{query} is a new image: give --model (the backbone or checkpoint that made "
                f"{args.embeddings}) to embed it"
            )
        return query, None
    if not is_file:
        raise CommandError(
            f"--model is only used to embed an image file given as QUERY; {query!r} is not an image file "
            "(an index or an embedded filename needs no model): drop --model"
        )
    from embedlab import datasets, models

    image = datasets.open_rgb(query)  # a damaged file: one line naming it
    if models.canonical_backbone(args.model) in models.BACKBONES:
        return image, args.model
    if not Path(args.model).is_file():
        raise CommandError(f"--model {args.model!r} is neither a backbone name nor an existing file")
    return image, models.load_backbone(args.model)


def cmd_neighbors(args: argparse.Namespace) -> int:
    """Print the k nearest neighbours of an image (index, filename or image file)."""
    from embedlab import curation

    settings = settings_from(args, CurationSettings)
    emb = _load(args.embeddings)
    query: Any = int(args.query) if args.query.lstrip("-").isdigit() else args.query
    if isinstance(query, int) and not 0 <= query < len(emb):
        raise CommandError(
            f"QUERY {query} is out of range: the image indices of {args.embeddings} go from 0 to {len(emb) - 1}"
        )
    query, model = _neighbors_query(args, emb, query)
    found = curation.nearest_neighbors(emb, query, k=settings.neighbors_k, model=model)
    _say(found.table(0).to_string(index=False))
    return 0


def cmd_outliers(args: argparse.Namespace) -> int:
    """List the most unusual images (largest distance to their k-th neighbour, read off one neighbour graph)."""
    from embedlab import curation

    settings = settings_from(args, CurationSettings)
    if args.output:
        check_output(args.output, "--output")
        check_apart(("--output", args.output), ("EMBEDDINGS", args.embeddings))
    emb = _load(args.embeddings)
    graph = curation.knn_graph(emb, settings.outlier_k, backend=settings.search_backend, progress=not args.quiet)
    scores = curation.outlier_scores(emb, k=settings.outlier_k, graph=graph)
    order = scores.argsort()[::-1][: settings.outlier_count]
    _write_lines(args.output, [f"{scores[i]:.4f}\t{emb.filenames[i]}" for i in order])
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    """List groups of near-duplicate images (cosine similarity >= threshold), one group per line.

    Exact search compares every pair; past `curation.graph.AUTO_EXACT_BELOW` images (or with --backend faiss) the
    pairs come from each image's nearest neighbours in a FAISS graph."""
    from embedlab import curation

    settings = settings_from(args, CurationSettings)
    if args.output:
        check_output(args.output, "--output")
        check_apart(("--output", args.output), ("EMBEDDINGS", args.embeddings))
    emb = _load(args.embeddings)
    groups = curation.near_duplicates(
        emb, threshold=settings.duplicate_threshold, backend=settings.search_backend, progress=not args.quiet
    )
    _write_lines(args.output, ["\t".join(emb.filenames[i] for i in group) for group in groups])
    if not args.quiet:
        print(f"{len(groups)} groups, {sum(len(g) for g in groups)} images", file=sys.stderr)
    return 0
