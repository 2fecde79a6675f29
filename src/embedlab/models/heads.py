"""`HeadedBackbone`: a trained backbone with its heads kept, embedding as the backbone's features and/or the heads'.

Multi-teacher distillation trains one head per teacher on the student's features; AM-RADIO (CVPR 2024) keeps them
and uses their outputs as features, and so does the exported model: `export_backbone` writes its state dict
("backbone.*" with the original key names below that prefix, "heads.<part>.*", the part centres) and a .json
sidecar naming the heads and the output chosen, from which `load_backbone` rebuilds it (weights_only=True).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from embedlab.models import Backbone

BACKBONE_PART = "backbone"  # the part that is the backbone's own features


class HeadedBackbone(Backbone):
    """A trained backbone with its heads kept, embedding as the chosen parts joined: the backbone's features and/or
    each head's output (a teacher's space), each centred on the training images and L2-normalised, concatenated.

    AM-RADIO keeps one adaptor head per teacher and uses their outputs as features; so does this. Its state dict
    holds "backbone.*" (the original key names below that prefix), "heads.<part>.*" and the part centres; the
    .json sidecar names the parts and the `output` chosen, so `load_backbone` rebuilds it with weights_only=True.
    """

    def __init__(self, backbone: Backbone, heads: Mapping[str, nn.Linear], output: tuple[str, ...] | None = None):
        super().__init__(
            backbone.name, 0, small_images=backbone.small_images, layers=backbone.layers, weights=backbone.weights
        )
        self.backbone = backbone
        self.heads = nn.ModuleDict(dict(heads))
        self.part_dims = {BACKBONE_PART: backbone.embedding_dim, **{k: h.out_features for k, h in heads.items()}}
        self.register_buffer("centres", torch.zeros(sum(self.part_dims.values())))
        self.meta = dict(backbone.meta)
        self.select(output or tuple(self.part_dims))

    def select(self, output: tuple[str, ...] | list[str]) -> HeadedBackbone:
        """Embed as these parts from now on ("backbone" and head names, in order); embedding_dim follows."""
        unknown = [part for part in output if part not in self.part_dims]
        if unknown or not output:
            raise ValueError(f"output {list(output)!r}: choose parts among {', '.join(self.part_dims)}")
        self.output = tuple(output)
        self.embedding_dim = sum(self.part_dims[part] for part in self.output)
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's feature map (what a classifier or fine-tuning on the backbone reads)."""
        return self.backbone.features(x)

    def raw_parts(self, x: torch.Tensor, parts: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Each part's output before centring and normalising (all parts, or those named)."""
        features = self.backbone(x)
        wanted = parts or tuple(self.part_dims)
        return {p: features if p == BACKBONE_PART else self.heads[p](features) for p in wanted}

    def _centre(self, part: str) -> torch.Tensor:
        """The part's slice of the centres buffer."""
        start = 0
        for name, dim in self.part_dims.items():
            if name == part:
                return self.centres[start : start + dim]
            start += dim
        raise KeyError(part)

    @torch.no_grad()
    def fit_centres(self, batches: Any) -> HeadedBackbone:
        """Set every part's centre to its mean output over these image batches (the training images)."""
        sums, count = torch.zeros_like(self.centres), 0
        for batch in batches:
            raw = self.raw_parts(batch.to(self.centres.device))
            sums += torch.cat([raw[p].float().sum(dim=0) for p in self.part_dims])
            count += batch.shape[0]
        self.centres.copy_(sums / max(count, 1))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The chosen parts, each centred and L2-normalised, concatenated."""
        raw = self.raw_parts(x, self.output)
        parts = [nn.functional.normalize(raw[p].float() - self._centre(p), dim=1) for p in self.output]
        return torch.cat(parts, dim=1)

    def head_config(self) -> dict[str, Any]:
        """What the sidecar records to rebuild the heads: each head's [in, out] size, the output, the inner dim."""
        heads = [[k, h.in_features, h.out_features] for k, h in self.heads.items()]  # a list: the order matters
        return {"heads": heads, "output": list(self.output), "backbone_dim": self.backbone.embedding_dim}
