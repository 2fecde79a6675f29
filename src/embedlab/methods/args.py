"""The methods' own options (`TrainSettings.method_args`), torch-free: one Settings class per method that has any,
registered with it (`register_method(..., args="embedlab.methods.args:Class")`), so checking them imports no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from embedlab.settings import Settings, _bool, _choice, _str, setting


@dataclass(frozen=True)
class MultiTeacherArgs(Settings):
    """multi_teacher's own options; the defaults are the measured recipe (benchmarks/bench_quality.py ablates them)."""

    stage: ClassVar[str] = "multi_teacher"
    targets: str = setting(
        "view", _choice(("view", "clean")), "network teachers embed the student's own view, or the clean image (cached)"
    )
    pca_loss: str = setting("queue", _choice(("queue", "cosine")), "PCA teacher: queue distillation, or 1 - cos")
    mixup: bool = setting(True, _bool, "blend each batch with a shuffled copy (as LightlyTrain's distillation)")
    # The exported embedding. All heads are exported either way; the centred backbone embeds best (bench_quality:
    # kNN 0.835 against 0.826 heads, 0.831 both, 3,000 images).
    output: str = setting("backbone", _str, "the exported embedding: backbone, heads or head names, joined by '+'")
