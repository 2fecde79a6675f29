"""embed_to_shards: a folder streamed to fixed-size shards (img_emb/*.npy + metadata/*.parquet + manifest), the
same vectors as embed() in one go, resumable after a kill (at most one shard recomputed), read back by
load_embeddings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from embedlab.embedding import EmbeddingsError, embed, embed_to_shards, iter_shards, load_embeddings
from embedlab.embedding import shards as shards_module
from embedlab.models import create_backbone, export_backbone


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small exported backbone (random ResNet18, one stage: 64-d), offline and fast."""
    torch.manual_seed(0)
    net = create_backbone("resnet18", None, small_images=False, layers=1)
    return export_backbone(net, tmp_path_factory.mktemp("model") / "small.pt")


def test_shards_hold_the_same_vectors_as_one_embed_call(tiny_data: Path, small_model: Path, tmp_path: Path) -> None:
    out = embed_to_shards(tiny_data, small_model, tmp_path / "emb", shard_size=16, image_size=32, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and [s["rows"] for s in manifest["shards"]] == [16, 16, 8]
    assert sorted(p.name for p in (out / "img_emb").iterdir()) == [f"img_emb_000{i}.npy" for i in range(3)]
    assert sorted(p.name for p in (out / "metadata").iterdir()) == [f"metadata_000{i}.parquet" for i in range(3)]
    whole = embed(tiny_data, small_model, image_size=32, progress=False)
    loaded = load_embeddings(out)
    assert loaded.filenames == whole.filenames and (loaded.labels == whole.labels).all()
    assert loaded.class_names == whole.class_names
    np.testing.assert_allclose(loaded.numpy(), whole.numpy(), atol=1e-5)
    assert [len(part) for part in iter_shards(out)] == [16, 16, 8]


def test_a_rerun_skips_finished_shards(
    tiny_data: Path, small_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedlab.embedding import predict

    rows_seen: list[list[int]] = []
    real = predict.EmbedModule.predict_step

    def stopping_in_the_third_shard(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        rows_seen.append(batch[-1].tolist())
        if rows_seen[-1][0] == 32:
            raise KeyboardInterrupt  # Ctrl+C inside the third shard (rows 32-39)
        return real(self, batch, batch_idx)

    monkeypatch.setattr(predict.EmbedModule, "predict_step", stopping_in_the_third_shard)
    options = {"shard_size": 16, "image_size": 32, "batch_size": 8, "progress": False}
    with pytest.raises(KeyboardInterrupt, match="run the same command again"):
        embed_to_shards(tiny_data, small_model, tmp_path / "emb", **options)
    assert [e["index"] for e in json.loads((tmp_path / "emb" / "manifest.json").read_text())["shards"]] == [0, 1]
    rows_seen.clear()
    monkeypatch.setattr(predict.EmbedModule, "predict_step", real)
    monkeypatch.setattr(
        predict.EmbedModule, "predict_step", lambda self, b, i: rows_seen.append(b[-1].tolist()) or real(self, b, i)
    )
    embed_to_shards(tiny_data, small_model, tmp_path / "emb", **options)
    assert rows_seen == [list(range(32, 40))]  # only the unfinished shard
    assert len(load_embeddings(tmp_path / "emb")) == 40


def test_another_job_in_the_same_folder_is_refused(tiny_data: Path, small_model: Path, tmp_path: Path) -> None:
    embed_to_shards(tiny_data, small_model, tmp_path / "emb", shard_size=16, image_size=32, progress=False)
    with pytest.raises(EmbeddingsError, match="another job"):
        embed_to_shards(tiny_data, small_model, tmp_path / "emb", shard_size=8, image_size=32, progress=False)


def test_without_pyarrow_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(EmbeddingsError, match=r"embedlab\[scale\]"):
        shards_module.embed_to_shards(tmp_path, "resnet18", tmp_path / "out")


def _photos(folder: Path, count: int = 240) -> Path:
    """Photo-like JPEGs (random pixels, 64 x 48) in 4 albums."""
    rng = np.random.default_rng(0)
    for i in range(count):
        album = folder / f"album{i % 4}"
        album.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(album / f"img_{i:04d}.jpg")
    return folder


def _wait_for_shards(out: Path, process: subprocess.Popen[Any], shards: int) -> None:
    """Wait (up to 2 minutes) until the manifest lists `shards` finished shards or the process ends."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "manifest.json").is_file() and len(
            json.loads((out / "manifest.json").read_text())["shards"]
        ) >= shards:
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_during_sharded_embedding_exits_143_keeping_every_finished_shard(
    small_model: Path, tmp_path: Path
) -> None:
    """`embedlab embed FOLDER OUT` (OUT a folder: sharded) stopped by SIGTERM exits 143 with one line; the finished
    shards stay as written and a rerun embeds the rest (it went on embedding, and exited 0, before)."""
    photos, out = _photos(tmp_path / "photos"), tmp_path / "emb"
    command = [sys.executable, "-m", "embedlab.cli", "embed", str(photos), str(out), "--model", str(small_model)]
    command += ["--image-size", "32", "--shard-size", "12", "--batch-size", "4", "--device", "cpu", "--quiet"]
    process = subprocess.Popen([*command, "--num-workers", "0"], stderr=subprocess.PIPE, text=True)
    _wait_for_shards(out, process, 3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("embedlab")]
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "finished shards are kept" in lines[0], err[-2000:]
    before = shards_module.finished_shards(out, 20, 12, 240)
    assert 3 <= len(before) < 20, "the signal came while shards were still being written"
    stamps = {e["index"]: shards_module.shard_files(out, e["index"])[0].stat().st_mtime_ns for e in before}
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    assert json.loads((out / "manifest.json").read_text())["complete"]
    assert all(shards_module.shard_files(out, i)[0].stat().st_mtime_ns == t for i, t in stamps.items())
    loaded = load_embeddings(out)
    assert len(loaded) == 240 and len(set(loaded.filenames)) == 240


@pytest.mark.slow
def test_sigkilled_embedding_resumes_losing_at_most_one_shard(small_model: Path, tmp_path: Path) -> None:
    _photos(tmp_path / "photos")
    out = tmp_path / "emb"
    script = textwrap.dedent(
        f"""
        from embedlab import embed_to_shards
        embed_to_shards({str(tmp_path / "photos")!r}, {str(small_model)!r}, {str(out)!r}, shard_size=12,
                        image_size=32, num_workers=0, batch_size=4, progress=False)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    _wait_for_shards(out, process, 3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = json.loads((out / "manifest.json").read_text())["shards"]
    assert 3 <= len(before) < 20, "the kill came while shards were still being written"
    stamps = {e["index"]: shards_module.shard_files(out, e["index"])[0].stat().st_mtime_ns for e in before}
    embed_to_shards(tmp_path / "photos", small_model, out, shard_size=12, image_size=32, num_workers=0, progress=False)
    after = json.loads((out / "manifest.json").read_text())
    assert after["complete"] and len(after["shards"]) == 20
    assert all(shards_module.shard_files(out, i)[0].stat().st_mtime_ns == t for i, t in stamps.items())
    loaded = load_embeddings(out)
    assert len(loaded) == 240 and len(set(loaded.filenames)) == 240  # every photo exactly once


def test_a_folder_without_classes_gets_no_labels(small_model: Path, tmp_path: Path) -> None:
    photos = tmp_path / "loose"
    photos.mkdir()
    for i in range(10):
        Image.fromarray(np.full((40, 40, 3), i * 20, dtype=np.uint8)).save(photos / f"{i}.png")
    out = embed_to_shards(photos, small_model, tmp_path / "emb", shard_size=4, image_size=32, progress=False)
    loaded = load_embeddings(out)
    assert len(loaded) == 10 and loaded.labels is None and loaded.class_names is None


def test_shards_are_dealt_whole_to_processes() -> None:
    from embedlab.embedding.predict import deal_shards, shard_rows

    assert deal_shards([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert deal_shards([3], 4) == [[3], [], [], []]  # a process with nothing to do still runs (padding only)
    assert list(shard_rows(4, 50, 243)) == list(range(200, 243))


def test_options_lightning_cannot_honour_are_one_line(tiny_data: Path, small_model: Path, tmp_path: Path) -> None:
    with pytest.raises(EmbeddingsError, match="Lightning cannot embed with .* strategy 'banana'"):
        embed_to_shards(tiny_data, small_model, tmp_path / "emb", strategy="banana", image_size=32, progress=False)


def test_the_cli_refuses_what_shards_cannot_do(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from embedlab.cli import main

    assert main(["embed", str(tiny_data), str(tmp_path / "library"), "--model", "pca", "--quiet"]) == 1
    assert "does not take --model pca" in capsys.readouterr().err
    assert main(["embed", str(tiny_data), str(tmp_path / "lib"), "--model", "resnet18", "--plot", "--quiet"]) == 1
    assert "--plot" in capsys.readouterr().err
    assert not (tmp_path / "library").exists() and not (tmp_path / "lib").exists()


@pytest.mark.parametrize(
    "damage", ["interrupted", "deleted-metadata", "truncated-vectors", "rows-mismatch", "manifest"]
)
def test_an_incomplete_or_damaged_shard_folder_is_refused_in_one_line_and_a_rerun_repairs_it(
    tiny_data: Path, small_model: Path, tmp_path: Path, damage: str, capsys
) -> None:
    from embedlab import cli
    from embedlab.embedding import shards as shards_module

    options = {"shard_size": 16, "image_size": 32, "progress": False}
    out = embed_to_shards(tiny_data, small_model, tmp_path / "emb", **options)
    vectors, metadata = shards_module.shard_files(out, 1)
    if damage == "interrupted":  # as a kill leaves it: the last shard never written, the manifest says so
        for path in shards_module.shard_files(out, 2):
            path.unlink()
        manifest = json.loads((out / "manifest.json").read_text())
        (out / "manifest.json").write_text(
            json.dumps({**manifest, "complete": False, "shards": manifest["shards"][:2]})
        )
    elif damage == "deleted-metadata":
        metadata.unlink()
    elif damage == "truncated-vectors":
        vectors.write_bytes(vectors.read_bytes()[:200])
    elif damage == "rows-mismatch":  # another shard's vectors under this shard's name
        vectors.write_bytes(shards_module.shard_files(out, 2)[0].read_bytes())
    else:
        (out / "manifest.json").write_text('{"images": 4')
    with pytest.raises(EmbeddingsError, match="run the same `embedlab embed` command again") as caught:
        load_embeddings(out)
    assert "\n" not in str(caught.value)
    assert cli.main(["duplicates", str(out), "-q"]) == 1 and "again" in capsys.readouterr().err
    embed_to_shards(tiny_data, small_model, out, **options)  # the rerun repairs what is missing or damaged
    assert len(load_embeddings(out)) == 40 and json.loads((out / "manifest.json").read_text())["complete"]
