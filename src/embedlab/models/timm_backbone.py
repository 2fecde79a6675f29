"""Backbones from timm, named as LightlyTrain names them ('timm/<model>'): timm builds the network, embedlab trains,
embeds and exports it like its own. Registered on first use (embedlab.registry.canonical_backbone) when timm is
installed; the state dict keeps timm's own key names, so an export loads into `timm.create_model(<model>)`."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from embedlab.models import Backbone, WeightsUnavailableError
from embedlab.registry import BACKBONES, TIMM_PREFIX, BackboneSpec


class TimmBackbone(Backbone):
    """A timm model without its classifier (num_classes=0): timm's own pooling gives the flat embedding."""

    def __init__(self, net: nn.Module, name: str, *, weights: str | None) -> None:
        super().__init__(name, int(net.num_features), small_images=False, layers=None, weights=weights)
        for child, module in net.named_children():  # timm's key names in state_dict(), not "net.*"
            self.add_module(child, module)
        object.__setattr__(self, "_net", net)  # the same modules, reached through timm's forward

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """timm's feature map (or tokens, for a transformer) before pooling."""
        return self._net.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """timm's pooled features [N, D] (a transformer pools its tokens its own way, not as a feature map)."""
        return self._net(x)


def build_timm(spec: BackboneSpec, weights: str | None, small_images: bool, layers: int | None) -> Backbone:
    """timm.create_model(<model>, pretrained=weights == 'imagenet', num_classes=0); the registry entry is completed
    with the network's embedding size and input statistics. small_images does not apply: timm keeps its stem."""
    import timm

    model = spec.name.removeprefix(TIMM_PREFIX)
    try:
        net = timm.create_model(model, pretrained=weights == "imagenet", num_classes=0)
    except OSError as error:  # weights neither cached nor downloadable (timm fetches them from the Hugging Face Hub)
        raise WeightsUnavailableError(f"timm could not fetch the weights of {model!r}: {error}") from None
    except RuntimeError as error:  # timm's "Unknown model (...)"
        raise ValueError(f"backbone {spec.name!r}: {error} (timm.list_models() lists them)") from None
    config: dict[str, Any] = dict(getattr(net, "pretrained_cfg", None) or {})
    BACKBONES[spec.name] = dataclasses.replace(
        spec,
        embedding_dim=int(net.num_features),
        mean=tuple(config.get("mean", spec.mean)),  # type: ignore[arg-type]
        std=tuple(config.get("std", spec.std)),  # type: ignore[arg-type]
    )
    return TimmBackbone(net.train(), spec.name, weights=weights)
