"""Self-supervised methods, one readable file each, on a small shared base (`Method`).

=================  ===========================================================================
base.py            Method: heads + loss for one batch of views; an optional per-step hook
simclr.py          SimCLR: two views, NT-Xent over the batch
moco.py            MoCo v2: a momentum encoder and a memory bank of negatives
byol.py            BYOL: a momentum target and a predictor, no negatives
distillation.py    Distillation: the student learns a frozen teacher's embeddings of your images
distillation_v2.py Distillation v2: the student's feature map regresses the teacher's (LightlyTrain's default)
multi_teacher.py   Multi-teacher distillation: one student predicts several teachers' vectors (a network, PCA)
args.py            the methods' own options (method_args), torch-free settings classes
=================  ===========================================================================

Each method is registered by name in `embedlab.registry` (one line), which is where settings, the CLI and the
training loop find it; `build_method(name, backbone, settings, context)` makes one.
"""

from __future__ import annotations

from typing import Any

from embedlab.registry import method_spec


def build_method(name: str, backbone: Any, settings: Any, context: Any) -> Any:
    """The registered method `name` for `backbone`, configured by a TrainSettings and a MethodContext."""
    return method_spec(name).load()(backbone, settings, context)


__all__ = ["build_method"]
