"""Hostile inputs, cut downloads and killed processes: nothing lost, one clear line (issue 10).

Each test reproduces one failure a careful user met (a truncated JPEG, a server that drops the connection without
Content-Length, a process killed with SIGINT / SIGKILL at a chosen moment, NaN pixels, a 20000x1 PNG, ...) and
checks what now happens instead. Everything is offline and small.
"""

from __future__ import annotations

import csv
import http.server
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SCRATCH, SCRATCH_ARGS
from PIL import Image

from embedlab import cli, datasets
from embedlab.datasets import DatasetError, DatasetWarning, DownloadError, ImageFolder, download, extract

REPO = Path(__file__).resolve().parents[1]
TRAIN_ARGS = [
    *SCRATCH_ARGS,
    "--epochs",
    "2",
    "--batch-size",
    "4",
    "--image-size",
    "16",
    "--layers",
    "1",
    "--no-knn",
    "--num-workers",
    "0",
    "--accelerator",
    "cpu",
    "-q",
]


# ------------------------------------------------------------------------------------------------- helpers


def noise(size: tuple[int, int], seed: int) -> Image.Image:
    """A small RGB noise image (every image different, so nothing collapses to one vector)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def truncated_jpeg(path: Path, seed: int = 99) -> Path:
    """A JPEG cut after 40% of its bytes: the header is valid (the folder scan accepts it), decoding fails."""
    buffer = io.BytesIO()
    noise((48, 48), seed).save(buffer, format="JPEG", quality=95)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: int(len(buffer.getvalue()) * 0.4)])
    return path


def huge_png(path: Path, width: int, height: int, rows_per_block: int = 100) -> Path:
    """A valid grayscale PNG of width x height black pixels (a few hundred KB), made without deflating it all:
    one block of rows is compressed after a full flush (so it needs no history) and repeated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    assert height % rows_per_block == 0
    block = b"\x00" * ((width + 1) * rows_per_block)  # each row: filter byte 0 + the pixels
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = raw.compress(block) + raw.flush(zlib.Z_FULL_FLUSH)
    final = raw.flush(zlib.Z_FINISH)  # the last (empty) block
    adler = 1
    for _ in range(height // rows_per_block):
        adler = zlib.adler32(block, adler)
    stream = b"\x78\xda" + segment * (height // rows_per_block) + final + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b""))
    return path


def class_folder(root: Path, per_class: int = 8, classes: tuple[str, ...] = ("a", "b")) -> Path:
    """root/<class>/<i>.png small noise images."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise((20, 20), 100 * c + i).save(root / name / f"{i:02d}.png")
    return root


def one_line(text: str) -> str:
    """The only non-empty line of `text` (fails when there are more, or a traceback)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """cli.main in this process: (status, stdout, stderr)."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as stop:
        status = int(stop.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def python(script: str, *args: str, timeout: float = 240, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet in a fresh interpreter (the child we interrupt or kill)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------- 1. one damaged image does not end a run


@pytest.fixture()
def folder_with_damage(tmp_path: Path) -> Path:
    """16 images in two classes; one of them, b/zz_truncated.jpg, a JPEG cut after its header."""
    root = class_folder(tmp_path / "images")
    (root / "b" / "07.png").unlink()
    truncated_jpeg(root / "b" / "zz_truncated.jpg")
    return root


def test_embed_skips_a_truncated_jpeg_and_lists_it_beside_the_output(folder_with_damage: Path, tmp_path: Path):
    from embedlab.embedding import embed, load_embeddings

    assert "b/zz_truncated.jpg" in ImageFolder(folder_with_damage).filenames  # the header check lets it through
    with pytest.warns(DatasetWarning, match="zz_truncated.jpg"):
        emb = embed(folder_with_damage, "resnet18", weights=None, image_size=16, progress=False)
    assert len(emb) == 15 and "b/zz_truncated.jpg" not in emb.filenames
    assert torch.linalg.norm(emb.vectors, dim=1).min() > 0  # no silent zero vector for anyone
    assert [s["filename"] for s in emb.meta["skipped_images"]] == ["b/zz_truncated.jpg"]
    emb.save(tmp_path / "run" / "embeddings" / "x.pt")
    report = json.loads((tmp_path / "run" / "embeddings" / "x.skipped.json").read_text())
    assert report["count"] == 1 and "truncated" in report["skipped"][0]["reason"]
    assert load_embeddings(tmp_path / "run" / "embeddings" / "x.pt").meta["skipped_images"] == report["skipped"]
    with pytest.warns(DatasetWarning):  # verify="full" finds it up front, when the folder is read
        full = ImageFolder(folder_with_damage, verify="full")
    assert "b/zz_truncated.jpg" not in full.filenames and full.skipped[0][0] == "b/zz_truncated.jpg"


def test_cli_embed_with_verify_full_reports_the_skip_and_succeeds(capsys, folder_with_damage: Path, tmp_path: Path):
    out = tmp_path / "pca.pt"
    status, stdout, err = run_cli(
        capsys, "embed", folder_with_damage, out, "--model", "pca", "--dimensions", "4", "--verify", "full", "-q"
    )
    assert status == 0, err
    assert "wrote 15 x 4" in stdout and "skipped 1 file(s)" in err and str(tmp_path / "pca.skipped.json") in err
    saved = torch.load(out, weights_only=True)
    assert saved["meta"]["skipped_images"][0]["filename"] == "b/zz_truncated.jpg"


# --------------------------------------------------------------------- 2. cut downloads and damaged archives


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ARCHIVE = tar_gz({f"pics/c{i % 2}/{i}.bin": os.urandom(20_000) for i in range(8)})  # ~160 KB, incompressible


class DroppingHandler(http.server.BaseHTTPRequestHandler):
    """Serves ARCHIVE without Content-Length (the body ends when the connection closes); the first response is
    cut after DROP_AT bytes. Range requests are answered with 206 (again without Content-Length)."""

    protocol_version = "HTTP/1.0"
    requests: list[str | None] = []
    drop_first = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).requests.append(self.headers.get("Range"))
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        body = ARCHIVE[start:]
        if type(self).drop_first:
            type(self).drop_first = False
            body = body[: len(ARCHIVE) // 3]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(ARCHIVE) - 1}/*")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def dropping_server() -> Iterator[str]:
    DroppingHandler.requests, DroppingHandler.drop_first = [], True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DroppingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data.tar.gz"
    server.shutdown()
    server.server_close()


def test_a_cut_download_without_content_length_is_never_marked_complete(dropping_server: str, tmp_path: Path):
    dest = tmp_path / "downloads" / "data.tar.gz"
    with pytest.raises(DownloadError, match="run again to resume"):
        download(dropping_server, dest, retries=0, progress=False)
    assert not dest.exists() and 0 < dest.with_name("data.tar.gz.part").stat().st_size < len(ARCHIVE)
    assert download(dropping_server, dest, retries=0, progress=False) == dest  # the rerun resumes with Range
    assert dest.read_bytes() == ARCHIVE and DroppingHandler.requests[-1] == f"bytes={len(ARCHIVE) // 3}-"


def test_the_same_cut_is_resumed_within_one_call(dropping_server: str, tmp_path: Path):
    dest = download(dropping_server, tmp_path / "data.tar.gz", retries=2, retry_wait=0.0, progress=False)
    assert dest.read_bytes() == ARCHIVE and len(DroppingHandler.requests) == 2


@pytest.mark.parametrize("kind", ["tar.gz", "zip", "tar"])
def test_verify_archive_and_extract_say_delete_and_run_again_in_one_line(tmp_path: Path, kind: str):
    members = {f"c/{i}.bin": os.urandom(5000) for i in range(4)}
    path = tmp_path / f"a.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    datasets.verify_archive(path)  # complete: reads to the end without complaint
    whole = path.read_bytes()
    cut = whole[: len(whole) // 2] if kind != "tar" else whole[: 2 * (512 + 5120)]  # tar: at a member boundary
    path.write_bytes(cut)
    for check in (datasets.verify_archive, lambda p: extract(p, tmp_path / f"out-{kind}", progress=False)):
        with pytest.raises(DatasetError) as caught:
            check(path)
        message = str(caught.value)
        assert "\n" not in message and f"delete {path} and run again" in message, message


def test_download_script_with_a_damaged_archive_exits_1_with_one_line(tmp_path: Path):
    archive = tmp_path / "served" / "aid.zip"  # AID: no published checksum, so the damage shows on extraction
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("AID/Forest/1.jpg", os.urandom(3000))
    data = bytearray(archive.read_bytes())
    data[60:70] = b"\xff" * 10  # inside the member's data: the CRC check fails on extraction
    (tmp_path / "data" / "aid" / "downloads").mkdir(parents=True)
    (tmp_path / "data" / "aid" / "downloads" / datasets.DATASETS["aid"].filename).write_bytes(bytes(data))
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "data_scripts" / "download_dataset.py"),
            "aid",
            "--data-dir",
            str(tmp_path / "data"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "delete" in one_line(result.stderr) and "and run again" in result.stderr


# ----------------------------------------------------------------- 3. one line, non-zero exit, everywhere


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return class_folder(tmp_path_factory.mktemp("small") / "images")


@pytest.mark.parametrize(
    "argv",
    [
        ["embed", "{folder}", "{tmp}/x.pt", "--model", "resnet18", "--weights", "random", "--device", "banana"],
        ["embed", "{folder}", "{tmp}/x.pt", "--model", "resnet18", "--weights", "random", "--device", "cuda:7"],
        ["classify", "{tmp}", "{folder}", "--device", "cuda:7"],
        ["train", "{folder}", "{tmp}/run", "--devices", "-1"],
        ["train", "{folder}", "{tmp}/run", "--devices", "banana", "--accelerator", "cpu"],
        ["run", "--params", "{tmp}/broken.yaml"],
    ],
    ids=["device-banana", "embed-cuda7", "classify-cuda7", "devices-minus-1", "devices-banana", "malformed-yaml"],
)
def test_bad_options_give_one_line_and_exit_1(capsys, small_folder: Path, tmp_path: Path, argv: list[str]):
    (tmp_path / "broken.yaml").write_text("dataset: fashion-mnist\nepochs: [1, 2\n  seed: 0\n")
    status, _, err = run_cli(capsys, *[a.format(folder=small_folder, tmp=tmp_path) for a in argv])
    assert status == 1, err
    assert one_line(err).startswith("embedlab: error: ")


def test_usage_errors_are_one_line_too(capsys):
    status, _, err = run_cli(capsys, "embed", "in.npy", "out.pt", "--weights", "banana")
    assert status == 2 and one_line(err).startswith("embedlab embed: error: argument --weights")
    status, _, err = run_cli(capsys, "embed", "in.npy", "out.pt", "--dimensions", "0")  # a value: the settings'
    expected = "embedlab: error: --embed-dimensions (--dimensions): expected an integer from 1"
    assert status == 1 and one_line(err).startswith(expected)


def test_make_thumbnails_script_exits_1_when_images_fail(tmp_path: Path):
    root = class_folder(tmp_path / "raw", per_class=2)
    truncated_jpeg(root / "a" / "bad.jpg")
    result = subprocess.run(
        [sys.executable, str(REPO / "data_scripts" / "make_thumbnails.py"), str(root), "--size", "8", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "a/bad.jpg" in result.stdout and "1 image(s) could not be read" in result.stderr


# ------------------------------------------------------------------------------ 4. no silent bad data


def test_nan_or_out_of_range_pixels_in_an_npy_input_are_refused(capsys, tmp_path: Path):
    images = np.random.default_rng(0).random((10, 8, 8)).astype(np.float32)
    images[3, 2, 2] = np.nan
    images[7, 0, 0] = np.inf
    np.save(tmp_path / "nan.npy", images)
    status, _, err = run_cli(capsys, "embed", tmp_path / "nan.npy", tmp_path / "out.pt", "--model", "pca", "-q")
    assert status == 1 and "2 image(s) hold NaN or infinite pixels (rows 3, 7)" in one_line(err)
    assert not (tmp_path / "out.pt").exists()
    np.save(tmp_path / "bytes.npy", images[:3] * 0 + 200.0)
    status, _, err = run_cli(capsys, "embed", tmp_path / "bytes.npy", tmp_path / "out.pt", "--model", "pca", "-q")
    assert status == 1 and "divide by 255" in one_line(err)
    np.save(tmp_path / "ok.npy", np.nan_to_num(images, posinf=1.0))
    np.save(tmp_path / "labels.npy", np.array([0, 1, np.nan, 1, 0, 1, 0, 1, 0, 1]))
    status, _, err = run_cli(
        capsys,
        "embed",
        tmp_path / "ok.npy",
        tmp_path / "out.pt",
        "--model",
        "pca",
        "--labels",
        tmp_path / "labels.npy",
        "-q",
    )
    assert status == 1 and "--labels must hold whole numbers" in one_line(err)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_validate_params_rejects_nan_and_inf(value: float):
    from embedlab.course.params import ParameterError, validate_params

    with pytest.raises(ParameterError, match="learning_rate"):
        validate_params(learning_rate=value)


def test_neighbors_uses_model_or_refuses_it_and_a_corrupt_model_is_one_line(capsys, small_folder: Path, tmp_path: Path):
    emb = tmp_path / "e.pt"
    assert (
        run_cli(
            capsys, "embed", small_folder, emb, "--model", "resnet18", "--weights", "random", "--image-size", "16", "-q"
        )[0]
        == 0
    )
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a model")
    new_image = tmp_path / "new.png"
    noise((20, 20), 7).save(new_image)
    status, _, err = run_cli(capsys, "neighbors", emb, new_image, "--model", corrupt, "-q")
    assert status == 1 and str(corrupt) in one_line(err)
    status, _, err = run_cli(capsys, "neighbors", emb, "0", "--model", "resnet18", "-q")
    assert status == 1 and "drop --model" in one_line(err)
    status, _, err = run_cli(capsys, "neighbors", emb, new_image, "-q")
    assert status == 1 and "give --model" in one_line(err)


# ---------------------------------------------------------------------------------- 5. bounded resources


def test_extreme_aspect_ratios_give_sane_thumbnails_and_crops(tmp_path: Path):
    root = tmp_path / "raw" / "strips"
    root.mkdir(parents=True)
    Image.new("RGB", (20000, 1), (200, 10, 10)).save(root / "wide.png")  # 140 bytes on disk
    Image.new("RGB", (3, 4000), (10, 200, 10)).save(root / "tall.png")
    report = datasets.make_thumbnails(tmp_path / "raw", 64, workers=1, progress=False)
    assert report.written == 2 and not report.failed
    with (
        Image.open(report.out_root / "strips" / "wide.png") as wide,
        Image.open(report.out_root / "strips" / "tall.png") as tall,
    ):
        assert wide.size == (512, 64) and tall.size == (64, 512)  # at most 8:1, the center kept
    assert datasets.open_rgb(root / "wide.png").size == (8, 1)


def test_images_over_the_pixel_budget_are_reported_and_jpegs_decode_reduced(tmp_path: Path):
    root = class_folder(tmp_path / "raw", per_class=2)
    huge_png(root / "a" / "huge.png", 13000, 13000)  # 169 Mpx: under PIL's bomb limit, ~0.5 GB once decoded
    with pytest.warns(DatasetWarning, match="huge.png"):
        folder = ImageFolder(root)
    assert "a/huge.png" not in folder.filenames and "per-image budget" in dict(folder.skipped)["a/huge.png"]
    with pytest.warns(DatasetWarning):
        report = datasets.make_thumbnails(root, 16, workers=1, progress=False)
    assert [rel for rel, _ in report.failed] == ["a/huge.png"] and "budget" in report.failed[0][1]
    noise((1600, 1200), 3).save(tmp_path / "big.jpg", quality=80)
    image = datasets.open_rgb(tmp_path / "big.jpg", max_pixels=200_000)  # decoded at 1/4 scale: 400 x 300
    assert image.size == (400, 300)
    with pytest.raises(DatasetError, match="budget"):
        datasets.open_rgb(tmp_path / "big.jpg", max_pixels=20_000)  # 1/8 scale is still over


PEAK_SCRIPT = """
import resource, sys, warnings
from embedlab.embedding import embed
warnings.simplefilter("ignore")
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
embed(sys.argv[1], "resnet18", weights=None, image_size=32, progress=False, num_workers=0)  # warm up
before = peak_mb()
emb = embed(sys.argv[2], "resnet18", weights=None, image_size=32, progress=False, num_workers=0)
print(len(emb), len(emb.meta["skipped_images"]), before, peak_mb())
"""


def test_peak_memory_of_embed_on_a_hostile_folder_is_bounded(tmp_path: Path):
    plain = class_folder(tmp_path / "plain")
    hostile = class_folder(tmp_path / "hostile")
    huge_png(hostile / "a" / "huge.png", 13000, 13000)
    Image.new("RGB", (20000, 1)).save(hostile / "a" / "strip.png")
    truncated_jpeg(hostile / "b" / "cut.jpg")
    result = python(PEAK_SCRIPT, str(plain), str(hostile))
    assert result.returncode == 0, result.stderr
    embedded, skipped, before, after = result.stdout.split()
    assert (int(embedded), int(skipped)) == (17, 2)  # the strip is embedded (cropped); huge and cut are skipped
    # MB over embedding the plain folder: measured ~50 with the budget, ~820 without it (huge.png decoded)
    assert float(after) - float(before) < 150, result.stdout


# ------------------------------------------------------------------------------------ 6. interrupted work


INTERRUPT_TRAINING = """
import os, signal, sys
import pytorch_lightning as pl
from embedlab import cli, training

class Interrupt(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl+C, delivered at a chosen step

make = training.run.make_callbacks
training.run.make_callbacks = lambda *a, **k: [*make(*a, **k), Interrupt()]
sys.exit(cli.main(sys.argv[1:]))
"""


def test_ctrl_c_during_training_says_how_to_resume_and_the_logs_stay_consistent(
    capsys, folder_with_damage: Path, tmp_path: Path
):
    run = tmp_path / "run"
    child = python(INTERRUPT_TRAINING, "train", str(folder_with_damage), str(run), *TRAIN_ARGS)
    assert child.returncode == 130, child.stderr
    line = [x for x in child.stderr.splitlines() if x.startswith("embedlab:")]
    assert len(line) == 1 and "step 3" in line[0] and "to resume" in line[0], child.stderr
    assert "Traceback" not in child.stderr
    assert [int(r["step"]) for r in rows(run / "loss.csv")] == [1, 2, 3]
    status, out, err = run_cli(capsys, "train", folder_with_damage, run, *TRAIN_ARGS)
    assert status == 0, err
    steps = [int(r["step"]) for r in rows(run / "loss.csv")]
    epochs = rows(run / "epochs.csv")
    assert steps == list(range(1, 9)) and [int(e["steps"]) for e in epochs] == [4, 4]  # 16 images / 4 per step
    # (two epochs: the resumed epoch 0 may not reach the damaged file again; epoch 1 sees every image)
    skipped = json.loads((run / "skipped_images.json").read_text())
    assert [s["filename"] for s in skipped["skipped"]] == ["b/zz_truncated.jpg"] and skipped["count"] == 1


KILL_DURING_CHECKPOINT = """
import os, signal, sys
import pytorch_lightning as pl
from embedlab import training

def save_checkpoint(self, filepath, *args, **kwargs):
    with open(filepath, "wb") as handle:
        handle.write(b"half a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)  # the power goes out mid-write

pl.Trainer.save_checkpoint = save_checkpoint
training.train(sys.argv[1], sys.argv[2], method="simclr", backbone="resnet18", init=None, epochs=1,
               batch_size=4, image_size=16, layers=1, knn_monitor=False,
               num_workers=0, accelerator="cpu", progress=False)
"""


def test_sigkill_during_a_checkpoint_write_leaves_debris_that_the_next_start_removes(
    small_folder: Path, tmp_path: Path
):
    from embedlab.training import train

    run = tmp_path / "run"
    child = python(KILL_DURING_CHECKPOINT, str(small_folder), str(run))
    assert child.returncode == -signal.SIGKILL
    debris = list((run / "checkpoints").glob(".last.ckpt.*.tmp"))
    assert len(debris) == 1 and not (run / "checkpoints" / "last.ckpt").exists()
    result = train(
        small_folder,
        run,
        **SCRATCH,
        epochs=1,
        batch_size=4,
        image_size=16,
        layers=1,
        knn_monitor=False,
        num_workers=0,
        accelerator="cpu",
        progress=False,
    )
    assert result.epochs == 1 and not list(run.rglob("*.tmp"))


def test_a_crash_mid_epoch_saves_a_checkpoint_and_the_rerun_resumes(monkeypatch, small_folder: Path, tmp_path: Path):
    import pytorch_lightning as pl

    from embedlab import training

    class Crash(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                raise RuntimeError("simulated out-of-memory")

    make = training.run.make_callbacks
    monkeypatch.setattr(training.run, "make_callbacks", lambda *a, **k: [*make(*a, **k), Crash()])
    options = {
        **SCRATCH,
        "epochs": 1,
        "batch_size": 4,
        "image_size": 16,
        "layers": 1,
        "knn_monitor": False,
        "num_workers": 0,
        "accelerator": "cpu",
        "progress": False,
    }
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated"):
        training.train(small_folder, run, **options)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    monkeypatch.setattr(training.run, "make_callbacks", make)
    training.train(small_folder, run, **options)
    assert [int(r["step"]) for r in rows(run / "loss.csv")] == [1, 2, 3, 4]


SLOW_THUMBNAILS = """
import sys, time
from embedlab import cli
from embedlab.datasets import thumbnails

one = thumbnails._thumbnail_one
def slow(src, dst, size):
    time.sleep(0.5)
    return one(src, dst, size)
thumbnails._thumbnail_one = slow
thumbnails._MIN_JOBS_FOR_POOL = 1
print("started", flush=True)
sys.exit(cli.main(["thumbnails", sys.argv[1], "--size", "8", "--workers", "2", "-q"]))
"""


def _children(pid: int) -> list[int]:
    """Ids of the living (non-zombie) child processes of `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_thumbnailer(root: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """The slow thumbnail command in a child process, once its two pool workers run."""
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_THUMBNAILS, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while len(workers := _children(child.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers) >= 2, "the pool did not start"
    return child, workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_thumbnail_workers_die_with_their_parent(tmp_path: Path, how: str):
    root = class_folder(tmp_path / "raw", per_class=20)  # 40 images x 0.5 s / 2 workers: 10 s of work
    child, workers = _start_thumbnailer(root)
    os.kill(child.pid, getattr(signal, how))  # the main process alone, as `kill` would
    _, err = child.communicate(timeout=30)
    if how == "SIGINT":
        assert child.returncode == 130 and "run the same command again to resume" in one_line(err)
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), f"workers {workers} outlived their parent ({how})"
    done = len(list((root.parent / "thumbnails-8").rglob("*.png")))
    assert done < 40  # stopped early, and what was written is whole: a rerun finishes the rest
    assert datasets.make_thumbnails(root, 8, workers=1, progress=False).written == 40 - done


def test_saving_embeddings_removes_the_debris_of_a_killed_save(tmp_path: Path):
    from embedlab.embedding import Embeddings

    (tmp_path / ".x.pt.k1ll3d.tmp").write_bytes(b"partial")
    (tmp_path / ".other.pt.abc.tmp").write_bytes(b"someone else's")
    Embeddings(torch.ones(2, 3), ["a", "b"]).save(tmp_path / "x.pt")
    assert not (tmp_path / ".x.pt.k1ll3d.tmp").exists() and (tmp_path / ".other.pt.abc.tmp").exists()


# ------------------------------------------------------------------- 7. which inputs carry their classes


def test_saved_pt_has_labels_and_class_names_whenever_they_are_known(capsys, small_folder: Path, tmp_path: Path):
    status, _, err = run_cli(capsys, "embed", small_folder, tmp_path / "folder.pt", "--model", "pca", "-q")
    assert status == 0, err
    saved = torch.load(tmp_path / "folder.pt", weights_only=True)
    assert saved["class_names"] == ["a", "b"] and saved["labels"].tolist() == [0] * 8 + [1] * 8

    images = np.random.default_rng(1).integers(0, 256, (12, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", np.array([3, 10, 3, 10, 7, 7, 3, 10, 7, 3, 10, 7]))
    status, _, err = run_cli(
        capsys,
        "embed",
        tmp_path / "x.npy",
        tmp_path / "array.pt",
        "--model",
        "pca",
        "--labels",
        tmp_path / "y.npy",
        "-q",
    )
    assert status == 0, err
    saved = torch.load(tmp_path / "array.pt", weights_only=True)
    assert saved["class_names"] == ["3", "7", "10"] and saved["labels"].tolist()[:5] == [0, 2, 0, 2, 1]
    assert saved["filenames"][:2] == ["00", "01"]  # row numbers: the class is in labels, not in the name

    loose = tmp_path / "loose"
    loose.mkdir()
    for i in range(4):
        noise((10, 10), i).save(loose / f"{i}.png")
    assert run_cli(capsys, "embed", loose, tmp_path / "loose.pt", "--model", "pca", "-q")[0] == 0
    saved = torch.load(tmp_path / "loose.pt", weights_only=True)
    assert "labels" in saved and saved["labels"] is None and saved["class_names"] is None  # not known: said so


# ------------------------------------------------------------------------------------ the CLI reference


def _doc_sections(text: str) -> dict[str, str]:
    """docs/cli.md split at its `### \\`embedlab NAME ...\\`` headings: command name -> its section."""
    sections: dict[str, str] = {}
    for part in text.split("\n### `embedlab ")[1:]:
        name = part.split(maxsplit=1)[0].rstrip("`")
        sections[name] = part.split("\n## ", 1)[0]
    return sections


def test_cli_doc_lists_every_command_and_option():
    import argparse
    import re

    doc = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = _doc_sections(doc)
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(sections) == set(commands), sorted(set(sections) ^ set(commands))
    common = {"--help", "--quiet", "--debug"}
    for name, sub in commands.items():
        flags = {f for action in sub._actions for f in action.option_strings if f.startswith("--")} - common
        documented = set(re.findall(r"`(--[a-z][a-z-]*)", sections[name]))
        assert flags == documented, (
            f"{name}: missing {sorted(flags - documented)}, unknown {sorted(documented - flags)}"
        )
    assert all(f"`{flag}`" in doc for flag in ("--quiet", "--debug"))


def test_datasets_doc_names_every_registry_entry_and_its_source():
    doc = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    for spec in datasets.DATASETS.values():
        assert f"| `{spec.name}` |" in doc, spec.name
        assert spec.url is None or f"<{spec.url}>" in doc, spec.url
