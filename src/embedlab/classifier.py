"""A classifier on the exported self-supervised backbone: the backbone plus a linear head, trained on labels.

This is the step after the tutorial: `run_dir/exported/backbone.pt` is a plain torchvision state dict, so the
self-supervised model becomes the start of a real model. Two modes: "frozen" trains only the head (fast; the
same question as a linear probe, answered with SGD on augmented images) and "finetune" trains everything
(the backbone with a 10x smaller learning rate than the head). The result reports the held-out accuracy next
to the frozen-embedding linear probe (`evaluation.linear_probe_accuracy`) on the same images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from embedlab.evaluation import linear_probe_accuracy
from embedlab.runtime import resolve_device
from embedlab.settings import CurationSettings, ParameterError

__all__ = ["Classifier", "ClassifierResult", "FinetuneError", "stratified_split", "train_classifier"]


_DECLARED = CurationSettings()  # the classifier options' defaults, declared once in settings


class FinetuneError(ValueError):
    """The classifier cannot be trained with these inputs (bad mode, too few images per class, no backbone)."""


class Classifier(nn.Module):
    """A backbone (image -> [N, D]) followed by a linear head (normalization + one linear layer) to class scores."""

    def __init__(self, backbone: nn.Module, num_classes: int, embedding_dim: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        dim = embedding_dim or int(backbone.embedding_dim)
        # BatchNorm without learned scale first (as MAE's linear probe): features of any scale train alike.
        self.head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) for a batch of images."""
        return self.head(self.backbone(x))


@dataclass
class ClassifierResult:
    """Held-out accuracy of the trained classifier, next to the frozen-embedding linear probe and chance."""

    accuracy: float
    probe_accuracy: float | None
    chance: float
    mode: str
    epochs: int
    train_images: int
    test_images: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    model: Classifier | None = field(default=None, repr=False)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason): images that could not be used

    def summary(self) -> str:
        """One line for a notebook or the command line."""
        probe = (
            f", linear probe on frozen embeddings {self.probe_accuracy:.3f}" if self.probe_accuracy is not None else ""
        )
        return (
            f"{self.mode} classifier: test accuracy {self.accuracy:.3f} on {self.test_images} images "
            f"(chance {self.chance:.3f}{probe}; {self.epochs} epochs, {self.train_images} training images, "
            f"{self.seconds:.0f} s)"
        )


def stratified_split(labels: Sequence[int], test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train/test keeping class proportions: the same split evaluation.linear_probe_accuracy uses.

    Same sizes and the same sklearn call, so the classifier and the linear probe are scored on the same images.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise FinetuneError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    n_test = max(len(classes), round(test_fraction * len(y)))
    if counts.min() < 2 or len(y) - n_test < len(classes):
        raise FinetuneError(
            f"need at least 2 images per class and room for a {test_fraction:.0%} test split; the smallest of "
            f"{len(classes)} classes has {counts.min()} image(s) ({len(y)} images in all)"
        )
    train, test = train_test_split(np.arange(len(y)), test_size=n_test, random_state=seed, stratify=y)
    return np.sort(train), np.sort(test)


def _resolve_backbone(backbone: Any) -> nn.Module:
    """Any nn.Module as it is, else `models.resolve_backbone` (a run directory, backbone.pt, .ckpt or a name);
    FileNotFoundError when the file it names is missing."""
    from embedlab.models import BackboneLoadError, resolve_backbone
    from embedlab.rundir import RunDir

    if isinstance(backbone, nn.Module):
        return backbone
    try:
        return resolve_backbone(backbone)
    except BackboneLoadError as exc:
        target = Path(str(backbone)).expanduser().resolve()
        if not (RunDir(target).exported if target.is_dir() else target).exists():
            raise FileNotFoundError(str(exc)) from None
        raise


class _Transformed(torch.utils.data.Dataset):
    """A subset of an ImageFolder with its own transform, yielding (tensor, label)."""

    def __init__(self, folder: Any, indices: np.ndarray, transform: Any) -> None:
        self.folder, self.indices, self.transform = folder, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label, _ = self.folder[int(self.indices[i])]
        return self.transform(image), int(label)


class _Checked(_Transformed):
    """Like _Transformed, but an image that fails to decode gives (empty, -1, index, reason) instead of raising."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, str]:  # type: ignore[override]
        from embedlab.datasets import DatasetError

        index = int(self.indices[i])
        try:
            image, label, _ = self.folder[index]
        except DatasetError as error:
            return torch.empty(0), -1, index, str(error)
        return self.transform(image), int(label), index, ""


def _keep_readable(items: list[tuple[torch.Tensor, int, int, str]]) -> tuple[Any, Any, list[int], list[Any]]:
    """Collate the readable images of a batch: (images or None, labels, their indices, (index, reason) of the rest)."""
    good = [item for item in items if not item[3]]
    bad = [(index, reason) for _, _, index, reason in items if reason]
    if not good:
        return None, None, [], bad
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), [g[2] for g in good], bad


def _transforms(backbone: nn.Module, image_size: int) -> tuple[Any, Any]:
    """Light augmentation for training (crop + flip); the one evaluation transform (`transforms.eval_transform`)."""
    from torchvision import transforms as T

    from embedlab.transforms import eval_transform, normalization

    name = getattr(backbone, "name", None)
    mean, std = normalization(name)
    train = T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(0.7, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    return train, eval_transform(image_size, name)


def _evaluate(model: Classifier, loader: Any, device: torch.device) -> float:
    """Accuracy of `model` on `loader`."""
    model.eval()
    correct, total = 0, 0
    with torch.inference_mode():
        for images, targets in loader:
            correct += int((model(images.to(device)).argmax(1).cpu() == targets).sum())
            total += targets.numel()
    return correct / max(total, 1)


def _frozen_features(
    backbone: nn.Module | None, folder: Any, transform: Any, device: torch.device, batch_size: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Embed every readable image of `folder` with the unchanged backbone (None: only decode them); return features,
    labels, the folder indices they belong to, and (file, reason) of each image that could not be decoded."""
    from embedlab._progress import tqdm

    loader = torch.utils.data.DataLoader(
        _Checked(folder, np.arange(len(folder)), transform),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=_keep_readable,
    )
    if backbone is not None:
        backbone.eval()
    features, labels, kept, skipped = [], [], [], []
    with torch.inference_mode():
        for images, targets, indices, bad in tqdm(loader, desc="read images", disable=not progress, leave=False):
            skipped += [(folder.filenames[index], reason) for index, reason in bad]
            if images is None:
                continue
            if backbone is not None:
                features.append(backbone(images.to(device)).float().cpu())
            labels.append(targets)
            kept += indices
    if not kept:
        raise FinetuneError(f"none of the {len(folder)} images could be decoded, e.g. {skipped[0][0]}: {skipped[0][1]}")
    array = torch.cat(features).numpy() if features else np.zeros((len(kept), 0), np.float32)
    return array, torch.cat(labels).numpy(), np.asarray(kept, dtype=np.int64), skipped


def _fit(
    model: Classifier,
    loader: Any,
    params: list[dict[str, Any]],
    epochs: int,
    device: torch.device,
    step: Any,
    desc: str,
    progress: bool,
) -> list[dict[str, float]]:
    """Minimize cross-entropy with AdamW + cosine decay; `step(batch)` returns (logits, targets) for one batch."""
    from embedlab._progress import tqdm

    optimizer = torch.optim.AdamW(params, weight_decay=1e-4)
    total = max(1, epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / total)))
    history = []
    with tqdm(total=total, desc=desc, disable=not progress, unit="step") as bar:
        for epoch in range(1, epochs + 1):
            losses, correct, seen = [], 0, 0
            for batch in loader:
                logits, targets = step([part.to(device) for part in batch])
                loss = nn.functional.cross_entropy(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                correct += int((logits.argmax(1) == targets).sum())
                seen += targets.numel()
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", refresh=False)
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "train_accuracy": correct / max(seen, 1)})
    return history


def _train_frozen(
    model: Classifier,
    features: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    device: torch.device,
    progress: bool,
) -> tuple[list[dict[str, float]], float]:
    """Train only the head on cached frozen features (one backbone pass in total); return history, test accuracy."""
    x = torch.as_tensor(features)
    y = torch.as_tensor(labels, dtype=torch.int64)
    train = torch.utils.data.TensorDataset(x[train_idx], y[train_idx])
    loader = torch.utils.data.DataLoader(
        train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    model.head.train()
    history = _fit(
        model,
        loader,
        [{"params": model.head.parameters(), "lr": learning_rate}],
        epochs,
        device,
        lambda batch: (model.head(batch[0]), batch[1]),
        "frozen backbone: head",
        progress,
    )
    model.head.eval()
    with torch.inference_mode():
        predicted = model.head(x[test_idx].to(device)).argmax(1).cpu()
    return history, float((predicted == y[test_idx]).float().mean())


def _train_finetune(
    model: Classifier,
    folder: Any,
    transforms_: tuple[Any, Any],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    device: torch.device,
    progress: bool,
) -> tuple[list[dict[str, float]], float]:
    """Train backbone (at lr/10) and head on augmented images; return history, test accuracy."""
    train_tf, test_tf = transforms_
    loader = torch.utils.data.DataLoader(
        _Transformed(folder, train_idx, train_tf),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        drop_last=len(train_idx) > batch_size,
    )
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.train()
    params = [
        {"params": model.head.parameters(), "lr": learning_rate},
        {"params": model.backbone.parameters(), "lr": learning_rate / 10},
    ]
    history = _fit(
        model, loader, params, epochs, device, lambda batch: (model(batch[0]), batch[1]), "fine-tuning", progress
    )
    test_loader = torch.utils.data.DataLoader(_Transformed(folder, test_idx, test_tf), batch_size=batch_size)
    return history, _evaluate(model, test_loader, device)


def _check_options(mode: str, epochs: int | None, batch_size: int, learning_rate: float) -> int:
    """Check the options against their one declaration (CurationSettings' classifier_* fields); the number of epochs
    (None: 50 frozen, 2 finetune). A bad option is a FinetuneError naming it."""
    try:
        settings = CurationSettings(
            classifier_mode=mode, classifier_epochs=epochs, classifier_batch_size=batch_size,
            classifier_learning_rate=learning_rate,
        )  # fmt: skip
    except ParameterError as exc:
        raise FinetuneError(str(exc)) from None
    return settings.classifier_epochs or (50 if mode == "frozen" else 2)


def _labeled_folder(data: Any, limit_per_class: int | None, verify: str) -> Any:
    """`data` (a dataset root or an ImageFolder) as an ImageFolder without transform; it needs 2 classes."""
    from embedlab import datasets

    if isinstance(data, datasets.ImageFolder):
        folder = data
    elif not Path(data).is_dir():
        raise FileNotFoundError(f"dataset folder not found: {data} (a folder with one subfolder per class)")
    else:
        folder = datasets.ImageFolder(Path(data), limit_per_class=limit_per_class, verify=verify)
    if len(folder.classes) < 2:
        raise FinetuneError(
            f"{getattr(folder, 'root', data)} has {len(folder.classes)} class folder(s); need at least 2"
        )
    return folder


def train_classifier(
    backbone: Any,
    data: Any,
    *,
    mode: str = _DECLARED.classifier_mode,
    epochs: int | None = _DECLARED.classifier_epochs,
    batch_size: int = _DECLARED.classifier_batch_size,
    learning_rate: float = _DECLARED.classifier_learning_rate,
    image_size: int | None = _DECLARED.classifier_image_size,
    test_fraction: float = 0.3,
    limit_per_class: int | None = _DECLARED.classifier_images_per_class,
    seed: int = _DECLARED.seed,
    device: str = "auto",
    probe: bool = True,
    progress: bool = True,
    verify: str = _DECLARED.classifier_verify,
) -> ClassifierResult:
    """Train backbone + linear head on a labeled image folder; report held-out accuracy and the linear probe.

    `backbone` is a run directory (its exported backbone), a backbone.pt / .ckpt path, a backbone name or a
    Backbone. `mode="frozen"` embeds every image once and trains only the head on those features (epochs are
    cheap: default 50); "finetune" trains all weights on augmented images (backbone at lr/10; default 2 epochs).
    `image_size`: default the backbone's training size, else 224. Undecodable images (`verify` as ImageFolder)
    are skipped and all named (`result.skipped`, a warning); NaN or infinite weights raise FinetuneError.
    """
    epochs = _check_options(mode, epochs, batch_size, learning_rate)
    started = time.perf_counter()
    torch.manual_seed(seed)
    folder = _labeled_folder(data, limit_per_class, verify)
    run_device = resolve_device(device)
    net = _resolve_backbone(backbone).to(run_device)
    transforms_ = _transforms(net, int(image_size or getattr(net, "meta", {}).get("image_size") or 224))
    model = Classifier(net, len(folder.classes)).to(run_device)
    embed = probe or mode == "frozen"  # frozen features, taken before any training touches the backbone
    features, labels, usable, unreadable = _frozen_features(
        net if embed else None, folder, transforms_[1], run_device, batch_size, progress
    )
    skipped = _usable_and_skipped(folder, labels, [*folder.skipped, *unreadable])
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    probe_accuracy = linear_probe_accuracy(features, labels, test_fraction=test_fraction, seed=seed) if probe else None
    options = dict(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed, device=run_device)
    options["progress"] = progress
    history, accuracy = _train_mode(
        mode, model, folder, transforms_, features, labels, usable, (train_idx, test_idx), options
    )
    _check_finite(model, learning_rate)
    return ClassifierResult(
        accuracy=accuracy,
        probe_accuracy=None if probe_accuracy is None else float(probe_accuracy),
        chance=float(np.bincount(labels[test_idx]).max() / len(test_idx)),
        mode=mode,
        epochs=epochs,
        train_images=len(train_idx),
        test_images=len(test_idx),
        seconds=time.perf_counter() - started,
        history=history,
        class_names=list(folder.classes),
        model=model.eval(),
        skipped=skipped,
    )


def _usable_and_skipped(folder: Any, labels: np.ndarray, skipped: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Warn once naming every image left out (so no rerun is needed to find the next); FinetuneError unless images
    could be read in at least two classes (a classifier needs two). Returns `skipped`."""
    if skipped:
        import warnings

        from embedlab.datasets import DatasetWarning

        names = "; ".join(f"{name} ({' '.join(why.split())})" for name, why in skipped)
        warnings.warn(f"{folder.root}: skipped {len(skipped)} unusable file(s): {names}", DatasetWarning, stacklevel=3)
    if len(np.unique(labels)) < 2:
        raise FinetuneError(
            f"{folder.root}: only {len(np.unique(labels))} class has usable images ({len(skipped)} file(s) skipped); "
            f"a classifier needs at least 2"
        )
    return skipped


def _check_finite(model: nn.Module, learning_rate: float) -> None:
    """Refuse a classifier whose weights went NaN or infinite (a learning rate too high): never save or use it."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise FinetuneError(
            f"training diverged: the classifier's weights became NaN or infinite with learning_rate={learning_rate:g}; "
            "use a smaller learning rate"
        )


def _train_mode(
    mode: str,
    model: Classifier,
    folder: Any,
    transforms_: tuple[Any, Any],
    features: np.ndarray,
    labels: np.ndarray,
    usable: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    options: dict[str, Any],
) -> tuple[list[dict[str, float]], float]:
    """Train the head on the frozen features ("frozen") or everything on images ("finetune"); history, accuracy.
    `split` indexes the usable images; `usable` maps them to the folder's indices."""
    train_idx, test_idx = split
    if mode == "frozen":
        model.backbone.requires_grad_(False)
        return _train_frozen(model, features, labels, train_idx, test_idx, **options)
    return _train_finetune(model, folder, transforms_, usable[train_idx], usable[test_idx], **options)
