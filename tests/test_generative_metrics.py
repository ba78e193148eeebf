"""The pinned evaluator and the generative metrics measured in its features: the weights
are the released ones, KID and precision/recall agree with independent computations,
and mode collapse shows where it should."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest
import torch
from safetensors import safe_open

from tests.test_cli import assert_one_line_error, invoke
from zoo.core.data import iterate_batches
from zoo.core.data import load as load_data
from zoo.core.errors import CheckpointError
from zoo.tasks.generate import feature_network
from zoo.tasks.generate import metrics as gm
from zoo.tasks.generate.feature_network import PINNED, file_sha256, load_pinned


@pytest.fixture(scope="module")
def features():
    """Pinned features of 400 test images, 400 training images and 400 sneakers."""
    network = load_pinned(torch.device("cpu"))
    fmnist = load_data()

    def look(split) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [network.features(b.images) for b in iterate_batches(
                    split, 200, PINNED.pixel_range, shuffle=False)]
            )  # fmt: skip

    sneakers = fmnist.train.labels == 7
    one_class = attrs.evolve(
        fmnist.train, images=fmnist.train.images[sneakers], labels=fmnist.train.labels[sneakers]
    )
    return {
        "test": look(fmnist.test.head(400)),
        "train": look(fmnist.train.head(400)),
        "sneakers": look(one_class.head(400)),
    }


def test_the_shipped_weights_are_the_released_ones():
    assert PINNED.path.is_file() and file_sha256(PINNED.path) == PINNED.sha256
    assert 0.5e6 < PINNED.path.stat().st_size < 2e6  # about 1 MB
    with safe_open(str(PINNED.path), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["name"] == PINNED.name and "benchmarks/evaluator.py" in metadata["recipe"]
    network, test = load_pinned(torch.device("cpu")), load_data().test
    correct = 0
    with torch.no_grad():
        for batch in iterate_batches(test, 1000, PINNED.pixel_range, shuffle=False):
            correct += int((network(batch.images).argmax(1) == batch.labels).sum())
    # the recipe's number, reproduced (to 3 of 10,000 images: other CPUs' kernels may
    # round a near-tie the other way)
    assert abs(correct - round(float(metadata["test_accuracy"]) * len(test))) <= 3
    assert correct / len(test) >= 0.92
    assert not any(p.requires_grad for p in network.parameters()) and not network.training


def test_an_altered_copy_of_the_weights_is_refused_in_one_line(tmp_path, monkeypatch):
    altered = tmp_path / "weights.safetensors"
    blob = bytearray(PINNED.path.read_bytes())
    blob[-1] ^= 0xFF  # one bit of one weight
    altered.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_pinned(torch.device("cpu"), attrs.evolve(PINNED, path=altered))
    missing = attrs.evolve(PINNED, path=tmp_path / "gone.safetensors")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_pinned(torch.device("cpu"), missing)


def test_zoo_eval_with_altered_evaluator_weights_is_one_line(gan_run, tmp_path, monkeypatch):
    altered = tmp_path / "weights.safetensors"
    altered.write_bytes(PINNED.path.read_bytes()[:-8] + b"\x00" * 8)
    before = (gan_run.path / "eval.json").read_bytes()  # the trainer's, in the real weights
    monkeypatch.setattr(feature_network, "PINNED", attrs.evolve(PINNED, path=altered))
    result = invoke("eval", str(gan_run.path), "--samples", "50")
    assert_one_line_error(result, 1, "pinned evaluator", "corrupt or altered", "reinstall")
    assert (gan_run.path / "eval.json").read_bytes() == before  # nothing overwritten
    assert json.loads(before)["evaluator"]["sha256"] == PINNED.sha256


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """KID by its definition (Binkowski et al. 2018, eq. 4), k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def test_kid_matches_its_definition(features):
    # with every image in every subset (400 < 1000) each subset gives the full estimate
    for other in ("train", "sneakers"):
        kid, spread = gm.kernel_distance(features["test"], features[other], seed=0)
        expected = _unbiased_mmd2(features["test"].double().numpy(),
                                  features[other].double().numpy())  # fmt: skip
        assert kid == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert spread == pytest.approx(0.0, abs=1e-9)
    real, collapsed = (gm.kernel_distance(features["test"], features[o], 0)[0]
                       for o in ("train", "sneakers"))  # fmt: skip
    assert abs(real) < 0.1 * collapsed  # unbiased: near 0 for real data, large for collapse


def test_kid_subsets_are_seeded_and_leave_the_global_rng_alone(features):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    big = torch.cat([features["train"]] * 3)  # 1200 > 1000: subsets are drawn
    first = gm.kernel_distance(big, big.flip(0), seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    assert gm.kernel_distance(big, big.flip(0), seed=4) == first
    assert gm.kernel_distance(big, big.flip(0), seed=5) != first


def test_precision_and_recall_match_the_prdc_reference(features):
    from prdc import compute_prdc  # Naeem et al.'s implementation of Kynkäänniemi's P/R

    for other in ("train", "sneakers"):
        precision, recall = gm.precision_recall(features["test"], features[other], k=3)
        reference = compute_prdc(
            features["test"].double().numpy(), features[other].double().numpy(), nearest_k=3
        )
        assert precision == pytest.approx(reference["precision"], abs=1 / 400)
        assert recall == pytest.approx(reference["recall"], abs=1 / 400)


def test_mode_collapse_shows_as_high_precision_and_low_recall(features):
    precision, recall = gm.precision_recall(features["test"], features["sneakers"])
    real_precision, real_recall = gm.precision_recall(features["test"], features["train"])
    assert precision > 0.8 and recall < 0.3  # sneakers are real garments, of one kind
    assert real_precision > 0.6 and real_recall > 0.6
    fd = gm.features_frechet_distance
    real, collapsed = (fd(features["test"], features[o]) for o in ("train", "sneakers"))
    assert real < 0.2 * collapsed


@pytest.fixture()
def gan_run(tmp_path):
    import zoo

    return zoo.run("gan", max_steps=2, train_size=128, test_size=64, batch_size=64,
                   progress=False, out=str(tmp_path / "runs"))  # fmt: skip
