"""The embed command: images (a folder, a .npy array or a dataset name) to saved vectors, plus PCA and a plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from embedlab.cli.arrays import NPY_IMAGES, ArrayImages
from embedlab.cli.common import (
    EMBED_MODELS_HELP,
    CommandError,
    _data_dir,
    _dataset_root,
    _say,
    check_apart,
    check_output,
    model_file,
    settings_from,
)
from embedlab.settings import EmbedSettings


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
            if Path(args.labels).suffix.lower() != ".npy":
                raise CommandError(f"--labels {args.labels}: give a .npy array of whole numbers, one per image")
            labels = np.load(args.labels, allow_pickle=False).reshape(-1)
        return source, ArrayImages(source, labels)
    if args.labels:
        raise CommandError("--labels is only for a .npy INPUT (folders take their labels from class subfolders)")
    return _dataset_root(args.input, _data_dir(args), None, not args.quiet), None


def _check_model_option(args: argparse.Namespace, settings: EmbedSettings) -> None:
    """Reject a bad --model / --layers combination before any work is done."""
    from embedlab import embedding, models

    embedding.resolve_device(args.device)  # --device banana / cuda:7 on a machine without it: one line, pca too
    layers = settings.embed_layers
    if args.model == "pca" or args.model in models.BACKBONES:
        if args.model == "pca" and layers is not None:
            raise CommandError("--layers applies to a backbone, not to --model pca")
        return
    if not Path(args.model).exists():
        raise CommandError(f"--model {args.model!r} is not {EMBED_MODELS_HELP} (no such file)")
    if layers is not None:
        raise CommandError("--layers applies to a backbone name; a checkpoint keeps the layers it was trained with")


def _embed_model(args: argparse.Namespace, settings: EmbedSettings, data: Any) -> Any:
    """Run the chosen model over the input and return Embeddings (PCA dims applied for non-PCA models)."""
    from embedlab import embedding

    name = args.name or Path(args.output).stem
    dimensions, size, limit = settings.embed_dimensions, settings.embed_image_size, settings.embed_limit
    if args.model == "pca":
        emb = embedding.embed_pca(
            data,
            dimensions=dimensions or 50,
            image_size=size or 32,
            limit=limit,
            seed=settings.seed,
            name=name,
            progress=not args.quiet,
            verify=args.verify,
        )
        if emb.dim < (dimensions or 50):
            print(
                f"note: PCA kept {emb.dim} components: there are fewer images or pixels than {dimensions or 50}",
                file=sys.stderr,
            )
        return emb
    emb = embedding.embed(
        data,
        _named_model(args, settings),
        weights=None if args.weights == "random" else args.weights,
        image_size=size,
        batch_size=settings.embed_batch_size,
        num_workers=settings.num_workers,
        device=args.device,
        limit=limit,
        name=name,
        progress=not args.quiet,
        verify=args.verify,
    )
    if dimensions:
        emb = _pca_reduce(emb, dimensions, settings.seed)
    return emb


def _named_model(args: argparse.Namespace, settings: EmbedSettings) -> Any:
    """--model as embed() takes it: a backbone name built with --weights, --small-images and --layers (seeded, so
    random-init weights are reproducible), else the checkpoint path."""
    import torch

    from embedlab import models

    torch.manual_seed(settings.seed)
    if args.model not in models.BACKBONES:
        return args.model
    weights = None if args.weights == "random" else args.weights
    return models.create_backbone(args.model, weights, small_images=args.small_images, layers=settings.embed_layers)


def _pca_reduce(emb: Any, dimensions: int, seed: int) -> Any:
    """Project embeddings to `dimensions` with PCA (fitted on these embeddings)."""
    import torch

    from embedlab.embedding import Embeddings
    from embedlab.projection import reduce_pca

    most = min(len(emb) - 1, emb.dim)  # N centred vectors span at most N - 1 directions: more would be zero columns
    if dimensions > most:
        raise CommandError(f"--dimensions {dimensions} is more than min(images - 1, features) = {most}")
    reduced, _ = reduce_pca(emb, dimensions, seed=seed)
    meta = {**emb.meta, "pca_dimensions": dimensions, "embedding_dim_before_pca": int(emb.vectors.shape[1])}
    return Embeddings(torch.from_numpy(reduced), emb.filenames, emb.labels, emb.class_names, emb.name, meta)


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
    from embedlab.registry import canonical_backbone

    args.model = canonical_backbone(args.model)  # 'torchvision/resnet18' as LightlyTrain spells it
    output = Path(args.output)
    if output.suffix == "" or output.is_dir():
        return _embed_to_folder(args, output)
    if output.suffix.lower() not in (".pt", ".npy", ".npz"):
        raise CommandError(f"OUTPUT {output} must end in .pt, .npy or .npz, or be a folder (no suffix) for shards")
    if args.compress and output.suffix.lower() != ".npz":
        raise CommandError("--compress writes a compressed .npz: give an OUTPUT ending in .npz")
    settings = settings_from(args, EmbedSettings)  # bad values fail before any work
    if settings.embed_dimensions is not None and args.plot and settings.embed_dimensions < 2:
        raise CommandError("--plot needs at least 2 dimensions")
    check_output(output, "OUTPUT")  # a path under a file, a read-only or full disk: before the work, not after
    check_apart(
        ("OUTPUT", output), ("INPUT", args.input), ("--model", model_file(args.model)), ("--labels", args.labels)
    )
    _check_model_option(args, settings)
    data, array = _embed_input(args)
    if array is None:
        emb = _embed_model(args, settings, data)
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="embedlab-npy-") as folder:
            emb = array.restore(_embed_model(args, settings, array.write_folder(Path(folder), not args.quiet)))
    emb.save(output, compress=args.compress)
    _say(f"wrote {len(emb)} x {emb.dim} embeddings to {output}")
    skipped = emb.meta.get("skipped_images") or []
    if skipped:
        from embedlab.embedding import skipped_path

        print(
            f"skipped {len(skipped)} file(s) that could not be used (no vectors for them): listed in "
            f"{skipped_path(output)}",
            file=sys.stderr,
        )
    if args.plot:
        figure = _plot_embeddings(emb, output.with_suffix(".png"), settings.seed, args.quiet)
        _say(f"wrote plot {figure}")
    return 0


SHARD_REFUSED = {
    "embed_dimensions": "--dimensions (PCA needs every vector at once: run it on the loaded shards)",
    "embed_limit": "--limit",
    "compress": "--compress",
    "plot": "--plot (draw the map with `embedlab umap OUTPUT`)",
    "labels": "--labels",
}


def _embed_to_folder(args: argparse.Namespace, output: Path) -> int:
    """Sharded, resumable embedding of a big folder into OUTPUT/ (embed_to_shards), on one or several devices."""
    from embedlab.embedding import embed_to_shards
    from embedlab.runtime import is_rank_zero
    from embedlab.settings import TrainSettings

    settings = settings_from(args, EmbedSettings)
    lightning = settings_from(args, TrainSettings)
    given = {"embed_dimensions": settings.embed_dimensions, "embed_limit": settings.embed_limit}
    refused = [text for key, text in SHARD_REFUSED.items() if given.get(key, getattr(args, key, None))]
    if refused or args.model == "pca":
        what = ", ".join(refused) if refused else "--model pca (it fits on every image at once)"
        raise CommandError(f"a folder OUTPUT (sharded embeddings) does not take {what}")
    check_output(output, "OUTPUT", folder=True)
    check_apart(("OUTPUT", output), ("INPUT", args.input), ("--model", model_file(args.model)))
    _check_model_option(args, settings)
    if Path(args.input).suffix.lower() in NPY_IMAGES:
        raise CommandError("a folder OUTPUT (sharded embeddings) needs an image folder or a dataset name as INPUT")
    data, _ = _embed_input(args)
    embed_to_shards(
        data, _named_model(args, settings), output, shard_size=settings.embed_shard_size,
        weights=None if args.weights == "random" else args.weights, image_size=settings.embed_image_size,
        batch_size=settings.embed_batch_size, device=args.device, devices=lightning.devices,
        num_nodes=lightning.num_nodes, strategy=lightning.strategy, num_workers=settings.num_workers,
        progress=not args.quiet, verify=args.verify,
    )  # fmt: skip
    if is_rank_zero():
        _say(f"wrote the shards of {args.input} to {output}/ (read them with load_embeddings({str(output)!r}))")
    return 0
