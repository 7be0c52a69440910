"""PointNet shape classifier: the shipped checkpoint, and training (resumable) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.eval.classifier import (DEFAULT_CHECKPOINT, classify_points, load_classifier)
from engine.eval.classifier_train import (STATE_NAME, LabeledPoints, generate_procedural_splits,
                                          train_classifier)
from engine.eval.errors import BadPointSet, ClassifierCheckpointInvalid, ClassifierUnavailable


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks on a shared 2-core machine run fastest without intra-op threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_shipped_checkpoint_is_complete_and_matches_the_generator():
    from engine.data.procedural import CATEGORIES

    for name in ("config.json", "model.safetensors", "MODEL.md"):
        assert (DEFAULT_CHECKPOINT / name).is_file(), name
    config = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    assert sorted(config["categories"]) == sorted(CATEGORIES)
    assert config["normalization"] == "box"
    assert config["evaluation"]["accuracy"] >= 0.95
    clf = load_classifier()
    assert clf.categories == config["categories"]


def test_shipped_classifier_recognises_unseen_test_split_shapes():
    from engine.data.procedural import CATEGORIES, generate_shape, split_seeds
    from engine.geometry.sampling import sample_surface

    # Test-split seeds beyond those MODEL.md measured on (the first 50 per category).
    seeds = split_seeds("test", 53)[50:]
    points, truth = [], []
    for cat in CATEGORIES:
        for seed in seeds:
            mesh = generate_shape(cat, seed).mesh
            points.append(sample_surface(mesh.vertices, mesh.faces, 2048, seed=seed)[0])
            truth.append(cat)
    pts = np.stack(points)
    labels, probs = classify_points(pts)
    assert probs.shape == (len(truth), len(CATEGORIES))
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    accuracy = np.mean([a == b for a, b in zip(labels, truth)])
    assert accuracy >= 0.9, list(zip(truth, labels))
    # Box normalization: scale and offset do not change the prediction.
    moved, _ = classify_points(pts * 3.5 + np.array([10.0, -4.0, 2.0]))
    assert moved == labels
    one, _ = classify_points(pts[0])      # a single N×3 cloud
    assert one == labels[:1]
    with pytest.raises(BadPointSet):
        classify_points(np.zeros((2, 10, 4)))


def test_training_is_resumable_and_writes_a_loadable_checkpoint(tmp_path: Path, monkeypatch):
    train, test = generate_procedural_splits(6, 3, tmp_path / "cache", n_points=256,
                                             categories=["mug", "table"], progress=False)
    assert train.points.shape == (12, 256, 3) and test.points.shape == (6, 256, 3)
    assert sorted(set(train.labels.tolist())) == [0, 1]
    out = tmp_path / "ckpt"

    real_save = torch.save
    calls = {"n": 0}

    def interrupted_save(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C after epoch 1

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(train, test, out, epochs=3, batch_size=4, n_points=64, progress=False)
    state = torch.load(out / STATE_NAME, weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1

    report = train_classifier(train, test, out, epochs=3, batch_size=4, n_points=64, progress=False)
    assert calls["n"] == 3                       # epochs 2 and 3 only: the run resumed
    assert not (out / STATE_NAME).exists()
    assert report["steps"] == 9 and 0.0 <= report["accuracy"] <= 1.0
    assert set(report["per_class"]) == {"mug", "table"}
    clf = load_classifier(out)
    labels, probs = clf.predict(test.points)
    assert np.mean(np.array(labels) == np.array(test.categories)[test.labels]) == report["accuracy"]
    assert "Test accuracy" in (out / "MODEL.md").read_text()


def test_tiny_training_learns_two_separable_classes(tmp_path: Path):
    rng = np.random.default_rng(0)

    def cloud(kind: str, n: int) -> np.ndarray:
        d = rng.normal(size=(n, 256, 3))
        if kind == "sphere":
            return d / np.linalg.norm(d, axis=2, keepdims=True)
        return rng.uniform(-1, 1, size=(n, 256, 3)) * np.array([1.0, 0.1, 0.1])  # a rod

    def data(n: int) -> LabeledPoints:
        return LabeledPoints(np.concatenate([cloud("sphere", n), cloud("rod", n)]).astype(np.float32),
                             np.array([0] * n + [1] * n), ["sphere", "rod"])

    report = train_classifier(data(32), data(8), tmp_path, epochs=6, batch_size=8, n_points=64,
                              progress=False)
    assert report["accuracy"] == 1.0


def test_missing_or_broken_checkpoints_raise_typed_errors(tmp_path: Path):
    with pytest.raises(ClassifierUnavailable):
        load_classifier(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"categories": ["a", "b"], "widths": [8],
                                                      "head": [4]}))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ClassifierCheckpointInvalid):
        load_classifier(tmp_path)
