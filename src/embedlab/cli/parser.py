"""The argparse parser: one subcommand per tutorial step; options that are settings fields come from the settings."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from embedlab.cli.classify import cmd_classify
from embedlab.cli.common import EMBED_MODELS_HELP, PROG, add_settings
from embedlab.cli.data import cmd_download, cmd_thumbnails
from embedlab.cli.embed import cmd_embed
from embedlab.cli.explore import cmd_compare, cmd_duplicates, cmd_neighbors, cmd_outliers, cmd_select, cmd_umap
from embedlab.cli.run import cmd_demo, cmd_pack, cmd_run
from embedlab.cli.train import cmd_train
from embedlab.settings import (
    CompareSettings,
    CurationSettings,
    DataSettings,
    EmbedSettings,
    ProjectionSettings,
    TrainSettings,
)


def _add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command takes."""
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    """Where named datasets live (DataSettings.data_dir)."""
    add_settings(parser, DataSettings, "data_dir")


def _parser_download(sub: Any) -> None:
    p = sub.add_parser(
        "download",
        help="download and prepare a dataset",
        description="Download, verify and extract a dataset (aid, eurosat, ucmerced) or write the "
        "embedded fashion-mnist; prints the dataset root (class subfolders). Resumes partial downloads.",
    )
    p.add_argument(
        "source", metavar="DATASET", help="aid, eurosat, ucmerced, fashion-mnist, or an image folder to validate"
    )
    add_settings(p, DataSettings, "data_dir", "limit_per_class")
    p.set_defaults(func=cmd_download)


def _parser_thumbnails(sub: Any) -> None:
    p = sub.add_parser(
        "thumbnails",
        help="build the thumbnail cache",
        description="Write resized copies (shorter side THUMBNAIL_SIZE px) of every image, same relative paths.",
    )
    p.add_argument("source", metavar="DATASET", help="dataset name or dataset root folder")
    add_settings(p, DataSettings, "data_dir", "thumbnail_size", "thumbnail_workers")
    p.add_argument("--output", help="output folder (default: <dataset>/thumbnails-SIZE)")
    p.set_defaults(func=cmd_thumbnails)


def _parser_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a self-supervised model",
        description="Train SimCLR (or another method) on the unlabeled images; writes "
        "RUN_DIR/checkpoints/last.ckpt and RUN_DIR/exported/backbone.pt. Re-running resumes.",
    )
    p.add_argument("data", help="dataset name or image folder")
    p.add_argument("run_dir", help="run directory for checkpoints, exported backbone and logs")
    _add_data_dir(p)
    add_settings(p, TrainSettings, *(n for n in TrainSettings.names() if n not in ("knn_monitor", "progress")))
    p.add_argument("--no-knn", action="store_true", help="skip the kNN accuracy monitor after each epoch")
    p.set_defaults(func=cmd_train)


def _parser_embed(sub: Any) -> None:
    p = sub.add_parser(
        "embed",
        help="embed images into vectors",
        description="Embed every image of INPUT and save the vectors, filenames and labels to OUTPUT "
        "(.pt, .npy + .json sidecar, or .npz). An OUTPUT without a suffix is a folder of shards "
        "(img_emb/*.npy + metadata/*.parquet + manifest.json) for big folders: written as it goes, resumed "
        "by the same command after a kill, on one or several devices (--devices, --num-nodes, --strategy: "
        "Lightning's DDP). INPUT is an image folder (class subfolders), a .npy "
        "array of images (N,H,W) or (N,H,W,C), uint8 or float in [0, 1], or a dataset name "
        "(fashion-mnist, aid, ...).",
        epilog="examples:\n  embedlab embed images.npy out.npz --model pca --dimensions 2 --plot\n"
        "  embedlab embed fashion-mnist fm.pt --model resnet18 --weights random --image-size 32\n"
        "  embedlab embed data/aid/raw aid.pt --model runs/aid/exported/backbone.pt\n"
        "  embedlab embed ~/photos library --model efficientnet_lite0 --image-size 224 --devices 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="image folder, .npy image array, or dataset name")
    p.add_argument("output", help="output file (.pt, .npy or .npz), or a folder for sharded, resumable embeddings")
    p.add_argument(
        "--model", default="efficientnet_lite0", help=f"{EMBED_MODELS_HELP} (default: efficientnet_lite0, ImageNet)"
    )
    p.add_argument(
        "--weights",
        default="imagenet",
        choices=["imagenet", "random"],
        help="weights for a backbone name (default: imagenet; needs the weights file offline)",
    )
    p.add_argument("--small-images", action="store_true", help="CIFAR-style stem for a named backbone (<= 64 px)")
    p.add_argument("--labels", help="a .npy of integer labels for a .npy INPUT (colours in --plot)")
    embed_options = ("embed_dimensions", "embed_layers", "embed_image_size", "embed_limit")
    add_settings(p, EmbedSettings, *embed_options, "embed_batch_size", "num_workers", "seed", "embed_shard_size")
    add_settings(p, TrainSettings, "devices", "num_nodes", "strategy")  # Lightning's, as in training: shards only
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--verify",
        default="header",
        choices=["header", "full", "none"],
        help="check the images first: header (fast, default), full (decode every file) or none; files "
        "that fail are skipped and listed in OUTPUT's <name>.skipped.json",
    )
    p.add_argument("--compress", action="store_true", help="compressed .npz (OUTPUT must end in .npz)")
    p.add_argument(
        "--plot",
        action="store_true",
        help="also write OUTPUT.png: a class-coloured 2-D plot (the vectors when --dimensions 2, else UMAP)",
    )
    p.add_argument("--name", help="name stored with the embeddings (default: OUTPUT's stem)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_embed)


def _parser_umap(sub: Any) -> None:
    p = sub.add_parser(
        "umap",
        help="2-D projection, figure and interactive HTML",
        description="Reduce embeddings to 2-D (UMAP by default) and save <name>.npy and <name>.png "
        "(in RUN_DIR/umap for RUN_DIR/embeddings/<name>.pt); with --image-root also <name>.html, an "
        "interactive plot that shows each image on hover.",
    )
    p.add_argument("embeddings", nargs="+", help="embeddings files (.pt/.npy/.npz)")
    p.add_argument("--output-dir", help="where to write (default: see above)")
    add_settings(p, ProjectionSettings, *ProjectionSettings.names())
    p.add_argument("--image-root", help="dataset root (or thumbnails folder) for the interactive HTML")
    p.set_defaults(func=cmd_umap)


def _parser_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="kNN / linear-probe / clustering scores side by side",
        description="Score several embedding sets of the same labeled images: kNN accuracy, linear "
        "probe accuracy and k-means NMI, best first.",
    )
    p.add_argument("embeddings", nargs="+", help="embeddings files with labels")
    add_settings(p, CompareSettings, "knn_k", "seed")
    p.add_argument("--output", help="also save the table (.csv, .json or .md)")
    p.set_defaults(func=cmd_compare)


def _parser_curation(sub: Any) -> None:
    p = sub.add_parser(
        "select",
        help="pick a diverse subset (e.g. what to label first)",
        description="Pick SUBSET_SIZE images that cover the embedding space (greedy farthest-point / "
        "k-center on cosine distance) and list their filenames, in the order picked.",
    )
    p.add_argument("embeddings", help="embeddings file")
    add_settings(p, CurationSettings, "subset_size", "seed")
    p.add_argument("--output", help="write the filenames here (default: stdout)")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser(
        "neighbors",
        help="most similar images to one image",
        description="Print the nearest neighbours (cosine distance) of QUERY: an image index, an "
        "embedded filename, or a new image file (needs --model).",
    )
    p.add_argument("embeddings", help="embeddings file")
    p.add_argument("query", help="index, filename (Class/file.png) or path of a new image")
    add_settings(p, CurationSettings, "neighbors_k")
    p.add_argument(
        "--model",
        help="backbone/checkpoint that made the embeddings: needed when QUERY is a new image file "
        "(it embeds it), refused otherwise",
    )
    p.set_defaults(func=cmd_neighbors)

    p = sub.add_parser(
        "outliers",
        help="most unusual images",
        description="List the N images farthest from their OUTLIER_K-th nearest neighbour (score, filename). "
        "Neighbours: exact for small sets, a FAISS graph for large ones (--backend).",
    )
    p.add_argument("embeddings", help="embeddings file")
    add_settings(p, CurationSettings, "outlier_count", "outlier_k", "search_backend")
    p.add_argument("--output", help="write here (default: stdout)")
    p.set_defaults(func=cmd_outliers)

    p = sub.add_parser(
        "duplicates",
        help="groups of near-duplicate images",
        description="Group images with cosine similarity >= DUPLICATE_THRESHOLD (transitively); one group "
        "per line, tab-separated filenames, largest groups first. Exact search compares every pair; a FAISS "
        "graph (large sets, --backend faiss) links each image to its 10 nearest neighbours only.",
    )
    p.add_argument("embeddings", help="embeddings file")
    add_settings(p, CurationSettings, "duplicate_threshold", "search_backend")
    p.add_argument("--output", help="write here (default: stdout)")
    p.set_defaults(func=cmd_duplicates)


def _parser_classify(sub: Any) -> None:
    p = sub.add_parser(
        "classify",
        help="train a classifier on the exported backbone",
        description="Backbone (RUN_DIR/exported/backbone.pt, a .pt or a .ckpt) + linear head, trained "
        "on a labeled dataset; prints held-out accuracy next to the frozen-embedding linear probe.",
    )
    p.add_argument("backbone", help="run directory, exported backbone.pt or checkpoint")
    p.add_argument("data", help="labeled dataset name or folder")
    _add_data_dir(p)
    add_settings(
        p,
        CurationSettings,
        "classifier_mode",
        "classifier_epochs",
        "classifier_batch_size",
        "classifier_images_per_class",
        "classifier_learning_rate",
        "classifier_image_size",
        "classifier_verify",
        "seed",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--save", help="save the classifier's state_dict here (.pt; checked before training)")
    p.set_defaults(func=cmd_classify)


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    """-p NAME=VALUE (or NAME VALUE), repeatable; values read like the settings read them."""
    parser.add_argument(
        "-p",
        "--param",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME[=VALUE]", "VALUE"),
        help="override one parameter (repeatable): -p epochs=5 or -p epochs 5; none/null, true/false, numbers",
    )


def _parser_pipeline(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the notebooks in order with a parameter set",
        description="Run notebooks 01-06 with papermill and a parameter set (demo, classroom, full, "
        "tiny or a YAML file) into RUN_DIR/notebooks, and write an index page.",
    )
    p.add_argument("set", nargs="?", metavar="PARAMS", help="the parameter set (the same as --params)")
    p.add_argument("--params", "-f", default="demo", help="demo, classroom, full, tiny or a YAML file (default: demo)")
    p.add_argument("--run-dir", help="override the run directory of the parameter set")
    p.add_argument(
        "--notebooks", "--only", nargs="+", help="only these notebooks (names or numbers, e.g. 03 04 or 03,04)"
    )
    _add_overrides(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo",
        help="the whole tutorial, offline and CPU-sized",
        description="Run every notebook with the demo parameters (the embedded fashion-mnist, small "
        "and fast); the same as `embedlab run --params demo`.",
    )
    p.add_argument("--run-dir", help="override the run directory")
    _add_overrides(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "pack",
        help="pack a finished run into a results archive for pretrained_url",
        description="Zip a finished run's exported model, embedding sets, 2-D maps, config, metrics and thumbnails "
        "into one archive (default RUN_DIR/results.zip). Notebooks 03-06 given its address or path as "
        "pretrained_url run from it without the dataset.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (with exported/backbone.pt)")
    p.add_argument("--output", "-o", help="the archive to write (default: RUN_DIR/results.zip)")
    p.set_defaults(func=cmd_pack)


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (and exit status 2), not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        """Print `embedlab CMD: error: MESSAGE (see embedlab CMD --help)` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with one subcommand per step."""
    parser = OneLineErrorParser(
        prog=PROG,
        description="Train, embed, visualize and compare self-supervised image embeddings. "
        "`embedlab demo` runs the whole tutorial offline.",
    )
    from embedlab import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        _parser_download,
        _parser_thumbnails,
        _parser_train,
        _parser_embed,
        _parser_umap,
        _parser_compare,
        _parser_curation,
        _parser_classify,
        _parser_pipeline,
    ):
        add(sub)
    for choice in sub.choices.values():
        _add_common(choice)
    return parser
