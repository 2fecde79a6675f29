"""Reliability, second round (issue 18): every entry point keeps the promises embed and train keep.

Each test reproduces one failure first (a damaged image in a notebook's figure, SIGTERM during training, a bad
number, a read-only or full output, a file that changed on the server, a query path, Ctrl+C with a dying thread)
and checks what happens now. Everything is offline and small: generated images, a localhost server, a subprocess
signalled at a chosen moment, a size-limited file (RLIMIT_FSIZE) or filesystem (tmpfs, when we may mount one).
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import SCRATCH_ARGS
from PIL import Image
from test_reliability import class_folder, one_line, python, run_cli, truncated_jpeg

from embedlab import cli, datasets
from embedlab.datasets import DatasetWarning, ImageFolder

TRAIN_ARGS = ["--batch-size", "4", "--image-size", "16", "--layers", "1", "--no-knn", "--num-workers", "0"]
TRAIN_ARGS += [*SCRATCH_ARGS, "--accelerator", "cpu", "-q"]


# ------------------------------------------------------------------------------------------------- helpers


@pytest.fixture()
def damaged(tmp_path: Path) -> Path:
    """Two classes of 4 images; a/zz_cut.jpg and b/zz_cut.jpg are JPEGs cut after their header."""
    root = class_folder(tmp_path / "images", per_class=4)
    truncated_jpeg(root / "a" / "zz_cut.jpg", 1)
    truncated_jpeg(root / "b" / "zz_cut.jpg", 2)
    return root


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at `folder` (root only); skips the test where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]).returncode:
        pytest.skip("mounting a size-limited or read-only tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture()
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write to: chmod for a normal user, a read-only tmpfs for root (who ignores modes)."""
    folder = tmp_path / "read-only"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with tmpfs(folder, "ro,size=1m"):
        yield folder


# ------------------------------------------------------------- 1. damaged images in the notebooks and classify


def test_sample_grid_and_augmented_pairs_skip_and_name_a_damaged_image(damaged: Path):
    from embedlab import plotting
    from embedlab.transforms import ssl_transform

    with pytest.warns(DatasetWarning, match="zz_cut.jpg"):
        fig = plotting.samples_per_class(damaged, per_class=5)  # every image of each class is drawn
    assert "skipped 2 unreadable" in fig._suptitle.get_text()
    transform = ssl_transform("natural", 16)
    with pytest.warns(DatasetWarning, match="zz_cut.jpg"):
        fig = plotting.augmented_pairs(ImageFolder(damaged), transform, n=10)  # all ten: both cut files drawn
    assert len([ax for ax in fig.axes if ax.images]) == 8 * 3  # the 8 readable images, each with two views
    with pytest.warns(DatasetWarning, match="zz_cut.jpg"):
        fig = plotting.image_grid([damaged / "a" / "00.png", damaged / "a" / "zz_cut.jpg"], ncols=2)
    assert [ax.get_title() for ax in fig.axes] == ["", "unreadable"]


@pytest.fixture()
def exported(tmp_path: Path) -> Path:
    """An exported 32 px one-stage ResNet18 (random init), as training writes it."""
    from embedlab import models

    torch.manual_seed(0)
    backbone = models.create_backbone("resnet18", layers=1)
    backbone.meta["image_size"] = 16
    return models.export_backbone(backbone, tmp_path / "run" / "exported" / "backbone.pt")


def test_classify_skips_and_names_every_damaged_file(capsys, damaged: Path, exported: Path, tmp_path: Path):
    status, out, err = run_cli(
        capsys, "classify", exported, damaged, "--epochs", "2", "--save", tmp_path / "c.pt", "-q"
    )
    assert status == 0, err
    assert "skipped 2 file(s)" in one_line(err) and "a/zz_cut.jpg" in err and "b/zz_cut.jpg" in err
    assert "test accuracy" in out and (tmp_path / "c.pt").is_file()
    status, _, err = run_cli(capsys, "classify", exported, damaged, "--epochs", "1", "--verify", "full", "-q")
    assert status == 0 and "a/zz_cut.jpg" in err and "b/zz_cut.jpg" in err  # found up front, the same list


def test_classify_refuses_an_infinite_learning_rate_and_nan_weights(capsys, monkeypatch, damaged: Path, exported: Path):
    from embedlab import classifier

    status, _, err = run_cli(capsys, "classify", exported, damaged, "--learning-rate", "inf", "-q")
    assert status == 1 and "--learning-rate" in one_line(err)
    with pytest.raises(classifier.FinetuneError, match="learning_rate"):
        classifier.train_classifier(exported, damaged, learning_rate=float("inf"), progress=False)
    train_mode = classifier._train_mode

    def diverging(*args, **kwargs):  # training that diverged (the settings refuse a learning rate above 10)
        result = train_mode(*args, **kwargs)
        with torch.no_grad():
            args[1].head[1].weight.fill_(float("nan"))
        return result

    monkeypatch.setattr(classifier, "_train_mode", diverging)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(classifier.FinetuneError, match="NaN or infinite"):
            classifier.train_classifier(exported, damaged, epochs=1, progress=False)


# --------------------------------------------------------------------- 2. SIGTERM behaves like Ctrl+C


SIGTERM_TRAINING = """
import os, signal, sys
import pytorch_lightning as pl
from embedlab import cli, training

class Terminate(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler, `timeout` or a recycled runtime sends

make = training.run.make_callbacks
training.run.make_callbacks = lambda *a, **k: [*make(*a, **k), Terminate()]
sys.exit(cli.main(sys.argv[2:]))
"""


def test_sigterm_saves_reexports_says_one_line_and_exits_non_zero(capsys, damaged: Path, tmp_path: Path):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", damaged, run, "--epochs", "1", *TRAIN_ARGS)[0] == 0  # an earlier export
    assert json.loads((run / "exported" / "backbone.json").read_text())["epochs"] == 1
    child = python(SIGTERM_TRAINING, "4", "train", str(damaged), str(run), "--epochs", "3", *TRAIN_ARGS)
    assert child.returncode == 143, child.stderr  # 128 + SIGTERM; it was 0
    line = one_line("\n".join(x for x in child.stderr.splitlines() if not x.startswith(" ") and "Warning" not in x))
    assert "SIGTERM" in line and "step 4" in line and "to resume" in line and "exported" in line, line
    meta = json.loads((run / "exported" / "backbone.json").read_text())
    assert meta.get("stopped_at_step") == 4  # the export matches the checkpoint, not the earlier epoch
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    status, _, err = run_cli(capsys, "train", damaged, run, "--epochs", "3", *TRAIN_ARGS)  # resumes to the end
    assert status == 0 and "stopped_at_step" not in json.loads((run / "exported" / "backbone.json").read_text())


def test_train_accepts_verify_none_and_says_files_not_drawn_were_not_checked(capsys, damaged: Path, tmp_path: Path):
    status, _, err = run_cli(
        capsys, "train", damaged, tmp_path / "run", "--epochs", "1", "--verify", "none", *TRAIN_ARGS
    )
    assert status == 0, err
    assert "files not drawn were not checked" in err
    report = json.loads((tmp_path / "run" / "skipped_images.json").read_text())
    assert report["verify"] == "none" and "files not drawn were not checked" in report["note"]


# ----------------------------------------------------------------- 3. bad numbers: one line naming the option


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder of 16 images and its 4-d PCA embeddings."""
    folder = class_folder(tmp_path_factory.mktemp("small") / "images")
    emb = folder.parent / "e.pt"
    assert cli.main(["embed", str(folder), str(emb), "--model", "pca", "--dimensions", "4", "-q"]) == 0
    return folder, emb


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["umap", "{emb}", "--min-dist", "nan"], "--min-dist"),
        (["umap", "{emb}", "--min-dist", "5"], "--min-dist"),
        (["train", "{folder}", "{tmp}/run", "--learning-rate", "1e308"], "--learning-rate"),
        (["embed", "{folder}", "{tmp}/x.pt", "--image-size", "20000"], "--image-size"),
        (["embed", "{folder}", "{tmp}/x.pt", "--batch-size", "99999999999999999999"], "--batch-size"),
        (["embed", "{folder}", "{tmp}/x.pt", "--dimensions", "0"], "--dimensions"),
        (["compare", "{emb}", "--seed", "-1"], "--seed"),
        (["compare", "{emb}", "--seed", "99999999999"], "--seed"),
        (["outliers", "{emb}", "--n", "0"], "--n"),
        (["thumbnails", "{folder}", "--workers", "100000"], "--workers"),
        (["embed", "{folder}", "{tmp}/afile/x.pt"], "OUTPUT"),
        (["compare", "{emb}", "--output", "{tmp}/afile/t.csv"], "--output"),
        (["classify", "{tmp}", "{folder}", "--save", "{tmp}/afile/c.pt"], "--save"),
    ],
)
def test_bad_numbers_and_paths_give_one_line_naming_the_option(capsys, small, tmp_path: Path, argv, option):
    (tmp_path / "afile").write_text("a file, not a folder")
    folder, emb = small
    status, _, err = run_cli(capsys, *[a.format(folder=folder, emb=emb, tmp=tmp_path) for a in argv])
    assert status == 1, err
    assert one_line(err).startswith("embedlab: error: ") and option in err


def test_every_numeric_option_names_its_range_in_its_help():
    import argparse

    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = []
    for name, sub in commands.items():
        for fields in (sub.get_default("settings_fields") or {}).values():
            for action in sub._actions:
                check = getattr(action, "dest", None) in fields and _check_of(action.dest)
                if check and getattr(check, "range", None) and "range " not in action.help:
                    missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing
    plain = [  # numeric options outside the settings would escape their checks
        f"{name} {action.option_strings[0]}"
        for name, sub in commands.items()
        for action in sub._actions
        if action.type in (int, float)
    ]
    assert not plain, plain


def _check_of(name: str):
    from embedlab.settings import field_check

    return field_check(name)


@pytest.mark.parametrize("case", ["one image", "identical images"])
def test_pca_of_one_image_or_identical_images_is_an_error_not_zero_vectors(capsys, tmp_path: Path, case: str):
    root = tmp_path / "images" / "a"
    root.mkdir(parents=True)
    for i in range(1 if case == "one image" else 4):
        Image.new("RGB", (12, 12), (40, 80, 120)).save(root / f"{i}.png")
    status, _, err = run_cli(capsys, "embed", tmp_path / "images", tmp_path / "x.pt", "--model", "pca", "-q")
    assert status == 1 and "zero vector" in one_line(err)
    assert not (tmp_path / "x.pt").exists()


# ---------------------------------------------------------------- 4. output checked first; full disks


def test_outputs_are_checked_before_the_work(capsys, monkeypatch, small, read_only: Path):
    from embedlab import classifier, embedding
    from embedlab.course import comparison

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started although the output cannot be written")

    for module, name in ((embedding, "embed_pca"), (comparison, "compare"), (classifier, "train_classifier")):
        monkeypatch.setattr(module, name, never)
    folder, emb = small
    for argv in (
        ["embed", folder, read_only / "x.pt", "--model", "pca"],
        ["compare", emb, "--output", read_only / "t.csv"],
        ["classify", folder.parent, folder, "--save", read_only / "c.pt"],
        ["select", emb, "--output", read_only / "s.txt"],
        ["umap", emb, "--output-dir", read_only / "maps"],
        ["thumbnails", folder, "--output", read_only / "thumbs"],
        ["train", folder, read_only / "run"],
    ):
        status, _, err = run_cli(capsys, *argv, "-q")
        assert status == 1 and "cannot be written" in one_line(err), (argv, err)


FULL_DISK_EMBED = """
import sys
from embedlab import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def _file_size_limit(limit: int):
    """A child whose files may not grow past `limit` bytes: writes fail with EFBIG, as on a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
def test_a_full_disk_while_saving_embeddings_is_one_line_and_leaves_no_orphan_list(damaged: Path, tmp_path: Path):
    out = tmp_path / "out" / "e.pt"
    argv = ["embed", str(damaged), str(out), "--model", "resnet18", "--weights", "random", "--image-size", "16", "-q"]
    child = python(FULL_DISK_EMBED, *argv, preexec_fn=_file_size_limit(8000))  # 8 images x 512 floats: 16 KB
    assert child.returncode == 1, child.stderr
    line = one_line("\n".join(x for x in child.stderr.splitlines() if "Warning" not in x and x.startswith("embed")))
    assert f"could not write {out}" in line and "free" in line
    assert not out.exists() and not (tmp_path / "out" / "e.skipped.json").exists()  # no list without its vectors
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_thumbnails_stop_once_on_a_full_disk(capsys, tmp_path: Path):
    root = class_folder(tmp_path / "raw", per_class=20)
    with tmpfs(tmp_path / "full", "size=64k") as full:
        (full / "filler").write_bytes(b"\0" * 60_000)
        with pytest.raises(datasets.DatasetError, match="cannot write thumbnails") as caught:
            datasets.make_thumbnails(root, 64, out_root=full / "thumbs", workers=1, progress=False)
        assert "\n" not in str(caught.value)
        (full / "filler").write_bytes(b"\0" * 60_000)
        status, _, err = run_cli(capsys, "thumbnails", root, "--output", full / "thumbs", "--size", "64", "-q")
    assert status == 1 and "could not read" not in err and one_line(err).startswith("embedlab: error:")


def test_thumbnails_of_another_size_are_not_up_to_date(tmp_path: Path):
    root = class_folder(tmp_path / "raw", per_class=3)
    out = tmp_path / "thumbs"
    assert datasets.make_thumbnails(root, 8, out_root=out, workers=1, progress=False).written == 6
    again = datasets.make_thumbnails(root, 16, out_root=out, workers=1, progress=False)
    assert again.written == 6 and again.skipped == 0  # it said "6 up to date" before
    with Image.open(out / "a" / "00.png") as thumb:
        assert min(thumb.size) == 16
    assert datasets.make_thumbnails(root, 16, out_root=out, workers=1, progress=False).skipped == 6
    assert datasets.make_thumbnails(root, 8, out_root=out, workers=1, progress=False).written == 6


# ------------------------------------------------------------------------ 5. downloads: validators, bytes


OLD, NEW = os.urandom(90_000), os.urandom(90_000)


class ChangingHandler(http.server.BaseHTTPRequestHandler):
    """Serves BODY with an ETag; the first answer is cut after a third. `honour_if_range=False` is a server
    that resumes (206) even when If-Range no longer matches."""

    protocol_version = "HTTP/1.0"
    body, etag, honour_if_range, cut, seen = OLD, '"v1"', True, True, []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        cls = type(self)
        cls.seen.append((self.headers.get("Range"), self.headers.get("If-Range")))
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        if start and cls.honour_if_range and self.headers.get("If-Range") not in (None, cls.etag):
            start = 0  # RFC 9110: the file changed, send all of it
        body = cls.body[start:]
        if cls.cut:
            cls.cut, body = False, body[: len(cls.body) // 3]
        self.send_response(206 if start else 200)
        self.send_header("ETag", cls.etag)
        self.send_header("Content-Length", str(len(cls.body) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(cls.body) - 1}/{len(cls.body)}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def changing_server() -> Iterator[str]:
    ChangingHandler.body, ChangingHandler.etag, ChangingHandler.cut, ChangingHandler.seen = OLD, '"v1"', True, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ChangingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data.bin"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("honour_if_range", [True, False], ids=["if-range", "resumes-anyway"])
def test_a_resume_after_the_file_changed_on_the_server_is_not_spliced(changing_server, tmp_path, honour_if_range):
    ChangingHandler.honour_if_range = honour_if_range
    dest = tmp_path / "data.bin"
    with pytest.raises(datasets.DownloadError):
        datasets.download(changing_server, dest, retries=0, progress=False)
    ChangingHandler.body, ChangingHandler.etag = NEW, '"v2"'  # the publisher replaced the file
    datasets.download(changing_server, dest, retries=1, retry_wait=0.0, progress=False)
    assert dest.read_bytes() == NEW  # never OLD[:30000] + NEW[30000:]
    assert ChangingHandler.seen[1] == (f"bytes={len(OLD) // 3}-", '"v1"')  # the resume carried If-Range
    assert not list(tmp_path.glob("*.part*"))


def test_the_archive_type_comes_from_the_bytes_not_the_name(tmp_path: Path):
    from embedlab.datasets.archives import archive_kind

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("a/1.bin", b"x" * 100)
    (tmp_path / "data.zip.part").write_bytes(buffer.getvalue())
    (tmp_path / "error.zip").write_bytes(b"<html>503 Service Unavailable</html>")
    (tmp_path / "cut.zip.part").write_bytes(buffer.getvalue()[:60])
    assert archive_kind(tmp_path / "data.zip.part") == "zip" and archive_kind(tmp_path / "error.zip") is None
    with pytest.raises(datasets.DatasetError, match="delete"):
        datasets.verify_archive(tmp_path / "cut.zip.part")  # a zip's start without its end: cut, not "not an archive"


# ------------------------------------------------------------------ 6. neighbors --model, 7. Ctrl+C on run


def test_neighbors_embeds_a_query_file_with_the_model_even_when_its_name_is_embedded(capsys, monkeypatch, small):
    from embedlab import curation

    folder, emb = small
    seen: dict[str, object] = {}

    def capture(data: object, query: object, **kwargs: object) -> object:
        seen.update(query=query, **kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(curation, "nearest_neighbors", capture)
    run_cli(capsys, "neighbors", emb, folder / "a" / "00.png", "--model", "resnet18", "-q")
    assert isinstance(seen["query"], Image.Image) and seen["model"] == "resnet18"  # embedded with the model
    run_cli(capsys, "neighbors", emb, folder / "a" / "00.png", "-q")
    assert seen["query"] == str(folder / "a" / "00.png") and seen["model"] is None  # its stored vector


INTERRUPTED_RUN = """
import sys, threading, time
from embedlab import cli
from embedlab.course import runner as pipeline

def run_pipeline(*args, **kwargs):
    stopping = threading.Event()
    def kernel_client():  # like jupyter_client's thread: it fails once the main thread is interrupted
        stopping.wait()
        raise RuntimeError("Event loop is closed")
    thread = threading.Thread(target=kernel_client)
    thread.start()
    try:
        print("started", flush=True)
        time.sleep(60)
    finally:
        stopping.set()
        thread.join()

pipeline.run_pipeline = run_pipeline
sys.exit(cli.main(["run", "--params", "tiny", "-q"]))
"""


def test_ctrl_c_on_run_prints_one_line_and_no_thread_traceback():
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_RUN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "started"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130
    assert one_line(err).startswith("embedlab: interrupted") and "Exception in thread" not in err
