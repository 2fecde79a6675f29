"""Tests for embedlab.embedding: embed() from names / checkpoints / exported backbones, PCA, save/load formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from embedlab.datasets import ImageFolder
from embedlab.embedding import (
    Embeddings,
    EmbeddingsError,
    concatenate_embeddings,
    embed,
    embed_pca,
    embedding_transform,
    load_embeddings,
    save_embeddings,
)
from embedlab.models import create_backbone, export_backbone

CLASSES = ("Beach", "Forest", "Parking")
COLOURS = {"Beach": (230, 210, 150), "Forest": (30, 110, 40), "Parking": (120, 120, 125)}


@pytest.fixture()
def image_root(tmp_path: Path) -> Path:
    """3 classes x 4 noisy 40x36 PNGs (a class colour plus noise): a tiny stand-in dataset."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data" / "raw"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.clip(np.array(COLOURS[name]) + rng.normal(0, 25, (36, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _reference_vectors(backbone: torch.nn.Module, root: Path, size: int) -> torch.Tensor:
    """Per-image Resize + CenterCrop + ToTensor + Normalize, then the backbone: what embed() must reproduce."""
    folder = ImageFolder(root, embedding_transform(size))
    images = torch.stack([folder[i][0] for i in range(len(folder))])
    with torch.inference_mode():
        return backbone.eval()(images)


def test_embed_backbone_object_matches_manual_forward(image_root: Path) -> None:
    backbone = create_backbone("resnet18", layers=2, small_images=True)
    emb = embed(image_root, backbone, image_size=32, batch_size=5, progress=False)
    folder = ImageFolder(image_root)
    assert emb.filenames == folder.filenames and emb.filenames[0] == "Beach/0.png"
    assert emb.labels is not None and emb.labels.tolist() == folder.labels
    assert emb.class_names == list(CLASSES)
    assert emb.vectors.shape == (12, 128) and emb.vectors.dtype == torch.float32
    assert torch.allclose(emb.vectors, _reference_vectors(backbone, image_root, 32), atol=1e-4)
    assert emb.meta["image_size"] == 32 and emb.meta["images_per_second"] > 0


def test_embed_named_backbone_defaults_to_224(image_root: Path) -> None:
    emb = embed(image_root, "efficientnet_lite0", weights="imagenet", limit=1, progress=False)
    assert emb.vectors.shape == (3, 1280) and emb.name == "efficientnet_lite0_imagenet"
    assert emb.meta["image_size"] == 224 and emb.filenames == ["Beach/0.png", "Forest/0.png", "Parking/0.png"]


def test_embed_exported_backbone_uses_stored_image_size(image_root: Path, tmp_path: Path) -> None:
    backbone = create_backbone("resnet18", layers=1, small_images=True)
    path = export_backbone(backbone, tmp_path / "run" / "exported" / "backbone.pt", extra_meta={"image_size": 24})
    emb = embed(image_root, path, progress=False)
    assert emb.meta["image_size"] == 24
    assert torch.allclose(emb.vectors, _reference_vectors(backbone, image_root, 24), atol=1e-4)


def test_embed_checkpoint_uses_training_size_and_warns_on_override(image_root: Path, tmp_path: Path) -> None:
    backbone = create_backbone("resnet18", layers=1)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": state,
            "hyper_parameters": {
                "backbone": "resnet18",
                "small_images": False,
                "layers": 1,
                "image_size": 48,
                "method": "simclr",
                "augment": "natural",
            },
        },
        ckpt,
    )
    emb = embed(image_root, ckpt, limit=2, progress=False)
    assert emb.meta["image_size"] == 48 and emb.name == "simclr_resnet18" and len(emb) == 6
    with pytest.warns(UserWarning, match="trained at 48 px but is embedded at 64 px"):
        assert embed(image_root, ckpt, image_size=64, limit=1, progress=False).meta["image_size"] == 64


def test_embed_imagefolder_keeps_its_transform_and_model_mode(image_root: Path) -> None:
    folder = ImageFolder(image_root)
    backbone = create_backbone("resnet18", layers=1).train()
    emb = embed(folder, backbone, image_size=16, limit=2, progress=False)
    assert len(emb) == 6 and folder.transform is None and backbone.training
    assert emb.filenames == [f"{c}/{i}.png" for c in CLASSES for i in range(2)]


def test_embed_bad_model_is_clear(image_root: Path, tmp_path: Path) -> None:
    with pytest.raises(EmbeddingsError, match="neither a backbone name"):
        embed(image_root, "resnet19", progress=False)
    with pytest.raises(EmbeddingsError, match="neither a backbone name"):
        embed(image_root, str(tmp_path / "missing.ckpt"), progress=False)


def test_embed_pca_baseline(image_root: Path) -> None:
    emb = embed_pca(image_root, dimensions=5, image_size=16, progress=False)
    assert emb.vectors.shape == (12, 5) and emb.name == "pca" and emb.labels is not None
    assert torch.equal(emb.vectors, embed_pca(image_root, dimensions=5, image_size=16, progress=False).vectors)
    assert (
        embed_pca(image_root, dimensions=50, image_size=8, progress=False).dim == 11
    )  # capped at N - 1: no zero column
    assert emb.meta["images_per_second"] > 0  # timed like embed(), so a concatenation with it has a speed


def _sample() -> Embeddings:
    """A small hand-made embedding set with labels and metadata."""
    vectors = torch.arange(24, dtype=torch.float32).reshape(6, 4) / 7
    return Embeddings(
        vectors,
        [f"{c}/{i}.jpg" for c in ("A", "B") for i in range(3)],
        np.array([0, 0, 0, 1, 1, 1]),
        ["A", "B"],
        name="demo",
        meta={"image_size": 64, "model": "resnet18"},
    )


def _assert_same(a: Embeddings, b: Embeddings) -> None:
    """Every field survives the round trip."""
    assert torch.equal(a.vectors, b.vectors) and a.filenames == b.filenames and a.class_names == b.class_names
    assert a.labels is not None and b.labels is not None and a.labels.tolist() == b.labels.tolist()
    assert (a.name, a.meta) == (b.name, b.meta)


def test_pt_round_trip_is_weights_only_loadable(tmp_path: Path) -> None:
    emb = _sample()
    path = emb.save(tmp_path / "embeddings" / "demo.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["embeddings"].dtype == torch.float32 and raw["embeddings"].shape == (6, 4)
    assert raw["filenames"] == emb.filenames
    _assert_same(emb, Embeddings.load(path))
    assert [p.name for p in path.parent.iterdir()] == ["demo.pt"]  # atomic write left no temp file


def test_npy_round_trip_keeps_filenames_in_sidecar(tmp_path: Path) -> None:
    emb = _sample()
    path = save_embeddings(emb, tmp_path / "demo.npy")
    assert np.array_equal(np.load(path), emb.numpy())
    assert json.loads((tmp_path / "demo.json").read_text())["filenames"] == emb.filenames
    _assert_same(emb, load_embeddings(path))
    (tmp_path / "demo.json").unlink()
    with pytest.warns(UserWarning, match="no sidecar"):
        assert load_embeddings(path).filenames == ["0", "1", "2", "3", "4", "5"]


@pytest.mark.parametrize("compress", [False, True])
def test_npz_round_trip(tmp_path: Path, compress: bool) -> None:
    emb = _sample()
    path = emb.save(tmp_path / "demo.npz", compress=compress)
    _assert_same(emb, load_embeddings(path))
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"vectors", "filenames_utf8", "labels", "class_names", "name", "meta"}


def test_npz_compression_makes_smaller_files(tmp_path: Path) -> None:
    emb = Embeddings(torch.zeros(500, 64), [f"A/{i}.png" for i in range(500)])
    plain, packed = emb.save(tmp_path / "a.npz"), emb.save(tmp_path / "b.npz", compress=True)
    assert packed.stat().st_size < plain.stat().st_size / 5
    loaded = load_embeddings(packed)
    assert loaded.labels is None and loaded.class_names is None and len(loaded) == 500


def test_lightlytrain_style_pt_loads(tmp_path: Path) -> None:
    torch.save({"embeddings": torch.ones(2, 3), "filenames": ["a.png", "b.png"]}, tmp_path / "lt.pt")
    emb = load_embeddings(tmp_path / "lt.pt")
    assert emb.name == "lt" and emb.labels is None and emb.filenames == ["a.png", "b.png"]


def test_load_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingsError, match="not found"):
        load_embeddings(tmp_path / "missing.pt")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "state.pt")
    with pytest.raises(EmbeddingsError, match="not an embeddings file"):
        load_embeddings(tmp_path / "state.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(EmbeddingsError, match="not a readable"):
        load_embeddings(tmp_path / "junk.pt")
    np.savez(tmp_path / "other.npz", x=np.ones(3))
    with pytest.raises(EmbeddingsError, match="not an embeddings .npz"):
        load_embeddings(tmp_path / "other.npz")
    with pytest.raises(EmbeddingsError, match="suffix"):
        _sample().save(tmp_path / "demo.csv")


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(EmbeddingsError, match="2 filenames for 3 vectors"):
        Embeddings(torch.zeros(3, 2), ["a", "b"])


# ------------------------------------------------------------------------------------------------ concatenation
def test_concatenation_centres_and_normalises_each_set_then_joins_them() -> None:
    """ImageNet ⊕ PCA: each set centred (mean over images subtracted) and L2-normalised per row, then side by side."""
    imagenet = _sample()
    imagenet.meta = {"model": "efficientnet_lite0", "weights": "imagenet", "image_size": 112, "images_per_second": 80}
    pca_vectors = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 5.0], [2.0, 2.0], [-4.0, 1.0], [7.0, 0.0]]) * 100
    pca = Embeddings(
        pca_vectors,
        imagenet.filenames,
        imagenet.labels,
        imagenet.class_names,
        name="pca",
        meta={"model": "pca", "image_size": 64, "embedding_dim": 2, "images_per_second": 20, "skipped_images": []},
    )
    both = concatenate_embeddings({"imagenet": imagenet, "pca": pca})
    assert both.vectors.shape == (6, 6) and both.name == "imagenet+pca"
    assert both.filenames == imagenet.filenames and both.class_names == ["A", "B"]
    assert both.labels is not None and both.labels.tolist() == [0, 0, 0, 1, 1, 1]
    left, right = both.vectors[:, :4].double(), both.vectors[:, 4:].double()
    for part, source in ((left, imagenet.vectors), (right, pca_vectors)):
        centred = source.double() - source.double().mean(dim=0)
        expected = centred / centred.norm(dim=1, keepdim=True)
        assert torch.allclose(part, expected, atol=1e-6)
        assert torch.allclose(part.norm(dim=1), torch.ones(6, dtype=torch.float64), atol=1e-6)
    # cosine similarity of the result: the mean of the two sets' centred cosines (each set weighs the same)
    sim = (both.vectors @ both.vectors.T) / 2
    assert torch.allclose(sim.double(), (left @ left.T + right @ right.T) / 2, atol=1e-6)
    meta = both.meta
    assert meta["recipe"] == "imagenet+pca" and meta["components"] == ["imagenet", "pca"]
    assert meta["image_size"] == 112 and meta["image_sizes"] == [112, 64] and meta["embedding_dim"] == 6
    assert meta["parts"][0]["weights"] == "imagenet" and "skipped_images" not in meta["parts"][1]
    assert meta["images_per_second"] == pytest.approx(1 / (1 / 80 + 1 / 20), abs=0.01)  # both parts to make


def test_concatenation_needs_the_same_images_in_the_same_order(tmp_path: Path) -> None:
    a = _sample()
    shuffled = Embeddings(a.vectors.flip(0), a.filenames[::-1], a.labels[::-1], a.class_names, name="b")
    with pytest.raises(EmbeddingsError, match="cannot concatenate 'a' and 'b': they hold different images"):
        concatenate_embeddings({"a": a, "b": shuffled})
    relabelled = Embeddings(a.vectors, a.filenames, 1 - a.labels, a.class_names)
    with pytest.raises(EmbeddingsError, match="other labels"):
        concatenate_embeddings({"a": a, "b": relabelled})
    with pytest.raises(EmbeddingsError, match="at least 2"):
        concatenate_embeddings({"a": a})
    both = concatenate_embeddings({"a": a, "b": a}, name="twice")  # saved and loaded like any other set
    assert both.meta["images_per_second"] is None  # a part without a measured speed: no speed claimed
    _assert_same(both, load_embeddings(both.save(tmp_path / "imagenet+pca.pt")))


def test_npz_filenames_cost_their_own_length_not_the_longest(tmp_path: Path) -> None:
    names = [f"{i}.jpg" for i in range(20_000)] + ["a/" * 97 + "long.jpg"]  # one 202-character path
    emb = Embeddings(torch.zeros(len(names), 2), names)
    path = emb.save(tmp_path / "e.npz")
    assert path.stat().st_size < 20_000 * 2 * 4 + 400_000  # fixed-width UTF-32 would add 16 MB
    assert load_embeddings(path).filenames == names


def test_npz_written_with_a_string_array_still_loads(tmp_path: Path) -> None:
    np.savez(tmp_path / "old.npz", vectors=np.ones((2, 3), np.float32), filenames=np.asarray(["a.png", "b.png"]))
    assert load_embeddings(tmp_path / "old.npz").filenames == ["a.png", "b.png"]


def test_saving_to_a_folder_of_shards_refuses_in_one_line(tmp_path: Path) -> None:
    """Not a silent no-op that returns the folder's own vectors: one line, and the folder untouched."""
    from embedlab.embedding import EmbeddingsError, save_embeddings

    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    emb = Embeddings(torch.zeros(2, 3), ["a/1.png", "a/2.png"])
    with pytest.raises(EmbeddingsError, match="it is a folder") as caught:
        save_embeddings(emb, folder)
    assert "\n" not in str(caught.value) and (folder / "manifest.json").read_text() == "{}"
