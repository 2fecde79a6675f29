"""Image preprocessing: the self-supervised view presets and *the one* evaluation transform.

`ssl_transform` turns a PIL image into the augmented views a method trains on; `eval_transform` is the
deterministic resize + centre crop + normalise that the kNN monitor, `embed`, curation queries and the classifier
all use, so a model is always evaluated on images prepared the same way. torch, torchvision and lightly are
imported when a transform is built, not at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from embedlab.registry import AUGMENT_PRESETS, BACKBONES, IMAGENET_MEAN, IMAGENET_STD, method_spec

# The smallest crop's share of the image, per preset (SimCLR's 0.08 for natural photos; milder for small images).
DEFAULT_MIN_SCALE = {"natural": 0.08, "aerial": 0.2, "grayscale": 0.2}
BLUR_MIN_SIZE = 64  # Gaussian blur only pays on images of 64 px and more (SimCLR drops it for CIFAR's 32 px)


def normalization(backbone_name: str | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std a backbone's inputs are normalised with (its registry entry; ImageNet's by default)."""
    spec = BACKBONES.get(backbone_name) if backbone_name else None
    return (spec.mean, spec.std) if spec else (IMAGENET_MEAN, IMAGENET_STD)


def _normalize_dict(backbone_name: str | None = None) -> dict[str, list[float]]:
    """Mean/std as lightly's transforms expect them."""
    mean, std = normalization(backbone_name)
    return {"mean": list(mean), "std": list(std)}


def _blur_prob(image_size: int, prob: float) -> float:
    """`prob` for images of BLUR_MIN_SIZE px and more, else 0."""
    return prob if image_size >= BLUR_MIN_SIZE else 0.0


class RandomRightAngleRotation:
    """Rotate a PIL image by 0, 90, 180 or 270 degrees (overhead imagery has no 'up')."""

    def __call__(self, image: Any) -> Any:
        """Pick one of the four right angles uniformly."""
        import torch

        k = int(torch.randint(0, 4, ()).item())
        return image if k == 0 else image.rotate(90 * k)


def _aerial_view(image_size: int, min_scale: float) -> Callable[[Any], Any]:
    """One view for overhead imagery: crops, flips both ways, right-angle rotations, milder colour jitter."""
    import torchvision.transforms as T
    from lightly.transforms import GaussianBlur

    norm = _normalize_dict()
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(min_scale, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            RandomRightAngleRotation(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.3, 0.05)], p=0.8),
            T.RandomGrayscale(p=0.1),
            GaussianBlur(sigmas=(0.1, 2.0), prob=_blur_prob(image_size, 0.3)),
            T.ToTensor(),
            T.Normalize(norm["mean"], norm["std"]),
        ]
    )


def _grayscale_view(image_size: int, min_scale: float) -> Callable[[Any], Any]:
    """One view for small gray images: crops and flips, brightness/contrast only, no blur, no hue/saturation."""
    import torchvision.transforms as T

    norm = _normalize_dict()
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(min_scale, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4)], p=0.5),
            T.ToTensor(),
            T.Normalize(norm["mean"], norm["std"]),
        ]
    )


def _natural_views(image_size: int, views: str, min_scale: float) -> list[Callable[[Any], Any]]:
    """SimCLR's pair of alike views, or BYOL's asymmetric pair (views='byol'); blur only at 64 px and above."""
    if views == "byol":
        from lightly.transforms.byol_transform import BYOLView1Transform, BYOLView2Transform

        common = {"input_size": image_size, "min_scale": min_scale, "normalize": _normalize_dict()}
        return [
            BYOLView1Transform(gaussian_blur=_blur_prob(image_size, 1.0), **common),
            BYOLView2Transform(gaussian_blur=_blur_prob(image_size, 0.1), **common),
        ]
    from lightly.transforms.simclr_transform import SimCLRViewTransform

    view = SimCLRViewTransform(
        input_size=image_size,
        min_scale=min_scale,
        gaussian_blur=_blur_prob(image_size, 0.5),
        normalize=_normalize_dict(),
    )
    return [view, view]


def ssl_transform(
    preset: str = "natural", image_size: int = 64, *, method: str = "simclr", min_scale: float | None = None
) -> Callable[[Any], list[Any]]:
    """PIL image -> the augmented, normalised views `method` trains on (a lightly MultiViewTransform).

    Presets: "natural" (SimCLR's: crops, flips, colour jitter, grayscale, blur; BYOL's asymmetric pair for BYOL),
    "aerial" (flips both ways and 90-degree rotations, milder colour jitter) and "grayscale" (small gray images:
    crops, flips, brightness/contrast). `min_scale` is the smallest crop area (None: the preset's). The values
    come checked from `TrainSettings`; the method's registry entry says which views and how many.
    """
    from lightly.transforms.multi_view_transform import MultiViewTransform

    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; use one of {', '.join(AUGMENT_PRESETS)}")
    spec = method_spec(method)
    scale = DEFAULT_MIN_SCALE[preset] if min_scale is None else float(min_scale)
    if preset == "natural":
        pair = _natural_views(image_size, spec.views, scale)
    else:
        view = _aerial_view(image_size, scale) if preset == "aerial" else _grayscale_view(image_size, scale)
        pair = [view, view]
    return MultiViewTransform([pair[i % 2] for i in range(spec.num_views)])


def eval_transform(image_size: int, backbone_name: str | None = None) -> Callable[[Any], Any]:
    """PIL image -> normalised float tensor: Resize(short side) + CenterCrop + ToTensor + Normalize.

    The one evaluation transform: the kNN monitor, `embed`, curation queries and the classifier's evaluation all
    see images this way (embed's fast path does the same steps on uint8 batches, tests/test_embedding.py checks it).
    """
    from torchvision import transforms as T

    mean, std = normalization(backbone_name)
    return T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor(), T.Normalize(mean, std)])
