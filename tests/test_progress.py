"""Progress output that suits its place: sparse bars inside kernels, one console line per notebook, a stop reason."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from embedlab import _progress
from embedlab.course import runner as pipeline


def test_text_bar_is_sparse_inside_a_kernel_without_widgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipykernel", SimpleNamespace())
    monkeypatch.setattr(_progress, "widgets_available", lambda: False)
    assert _progress.in_kernel() and not _progress.live_bars()
    out = io.StringIO()
    with _progress.tqdm(total=500, file=out) as bar:
        for _ in range(500):
            bar.update(1)
    assert bar.mininterval == _progress.SPARSE_SECONDS and type(bar).__module__ == "tqdm.std"
    assert out.getvalue().count("\r") == 0 and out.getvalue().count("\n") == 1  # one line, when the bar ends
    assert "500/500" in out.getvalue() and "0/500" not in out.getvalue().replace("500/500", "")
    monkeypatch.delitem(sys.modules, "ipykernel")
    assert not _progress.in_kernel() and _progress.live_bars()
    with _progress.tqdm(total=3, file=io.StringIO()) as bar:
        assert bar.mininterval == 0.1  # tqdm's own default on a terminal


def test_pipeline_prints_one_line_per_notebook_without_papermill_bar(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []
    monkeypatch.setattr(pipeline, "execute_notebook", lambda nb, out, params, cwd: calls.append(nb.name))
    monkeypatch.setattr(pipeline, "write_index", lambda root, **kw: root / "index.html")
    pipeline.run_pipeline("tiny", run_dir=tmp_path / "run", notebooks=["03", "05"])
    lines = capsys.readouterr().out.splitlines()
    assert calls == ["03_embed_images.ipynb", "05_compare_with_imagenet.ipynb"]
    assert [line.split(" done in")[0] for line in lines[1:3]] == [
        "[1/2] 03_embed_images",
        "[2/2] 05_compare_with_imagenet",
    ]
    assert len(lines) == 4 and lines[-1].startswith("done in")  # header, one line per notebook, the end


def test_execute_notebook_hides_the_kernel_tcp_warning_and_the_cell_bar(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import papermill

    seen = {}
    monkeypatch.setattr(papermill, "execute_notebook", lambda *args, **kwargs: seen.update(kwargs))
    pipeline.execute_notebook(tmp_path / "a.ipynb", tmp_path / "b.ipynb", {}, cwd=tmp_path)
    assert seen["progress_bar"] is False and "--IPKernelApp.log_level=ERROR" in seen["extra_arguments"]


def test_training_says_why_it_stopped() -> None:
    training = pytest.importorskip("embedlab.training")
    trainer = SimpleNamespace(global_step=300, current_epoch=6)
    assert training.stop_reason(trainer, 7, 300, None).startswith(
        "stopped by max_steps=300 after 300 steps (in epoch 7 of 7)"
    )
    early = SimpleNamespace(global_step=120, current_epoch=2)
    assert training.stop_reason(early, 7, None, 600).startswith(
        "stopped by the time cap (10.0 minutes) after 120 steps"
    )
    done = SimpleNamespace(global_step=329, current_epoch=7)
    assert training.stop_reason(done, 7, None, None) == "finished 7 epochs (329 steps)"
