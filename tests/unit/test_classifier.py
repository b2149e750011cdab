"""The shipped MNIST classifier: its hash, its accuracy, its training and its CLI wiring."""

from __future__ import annotations

import argparse
import os
import stat

import pytest
import torch

from bench.cli import classifier as classifier_command
from bench.cli import build_parser
from bench.metrics import classifier as C
from bench.errors import BenchError


@pytest.fixture(scope="module")
def model() -> C.MNISTClassifier:
    return C.load_classifier("cpu")


def test_shipped_weights_match_their_hash_and_are_small():
    assert C.file_sha256(C.WEIGHTS_PATH) == C.WEIGHTS_SHA256
    assert C.WEIGHTS_PATH.stat().st_size < 1_000_000


def test_shipped_weights_reach_99_percent(model):
    assert C.test_accuracy(model, "cpu") >= C.MIN_ACCURACY


def test_forward_returns_features_and_logits(model):
    features, logits = model(torch.zeros(3, 1, 28, 28))
    assert features.shape == (3, C.MNISTClassifier.num_features)
    assert logits.shape == (3, 10)
    assert 64 <= C.MNISTClassifier.num_features <= 256


def test_tampered_weights_are_rejected(tmp_path):
    data = bytearray(C.WEIGHTS_PATH.read_bytes())
    data[-100] ^= 0x01
    tampered = tmp_path / "mnist_classifier.pt"
    tampered.write_bytes(bytes(data))
    with pytest.raises(BenchError) as info:
        C.load_classifier("cpu", tampered)
    message = str(info.value)
    assert str(tampered) in message
    assert C.WEIGHTS_SHA256 in message and C.file_sha256(tampered) in message
    assert "python -m bench classifier train" in message


def test_missing_weights_are_reported(tmp_path):
    with pytest.raises(BenchError, match="not found.*classifier train"):
        C.load_classifier("cpu", tmp_path / "absent.pt")


def test_training_is_deterministic_and_leaves_the_global_rng_alone(tmp_path):
    rng = torch.get_rng_state()
    runs = [C.train_classifier(seed=5, epochs=1, subset=256) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), rng)
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = C.train_classifier(seed=6, epochs=1, subset=256).model.state_dict()
    assert not torch.equal(a["head.weight"], other["head.weight"])
    # Saved atomically, and the hash returned is the file's.
    digest = C.save_weights(runs[0].model, tmp_path / "w.pt")
    assert digest == C.file_sha256(tmp_path / "w.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]
    umask = os.umask(0)
    os.umask(umask)
    # An ordinary file (package data must be readable), not the 0600 of a temporary file.
    assert stat.S_IMODE((tmp_path / "w.pt").stat().st_mode) == 0o666 & ~umask
    loaded = C.load_classifier("cpu", tmp_path / "w.pt", expected_sha256=digest)
    assert torch.equal(loaded.head.weight, a["head.weight"])


def test_cli_parser_wiring():
    parser = build_parser("classifier")
    args = parser.parse_args(["classifier", "train", "--epochs", "3", "--seed", "7", "--out", "x.pt"])
    assert (args.func, args.classifier_command) == (classifier_command.run, "train")
    assert (args.epochs, args.seed, args.out, args.device) == (3, 7, "x.pt", "cpu")
    args = parser.parse_args(["classifier", "check"])
    assert (args.func, args.classifier_command, args.device) == (classifier_command.run, "check", "cpu")
    with pytest.raises(SystemExit):
        parser.parse_args(["classifier"])


@pytest.mark.parametrize("argv", [["classifier", "train", "--epochs", "x"], ["classifier", "train", "--seed", "1.5"],
                                  ["classifier", "check", "--seed", "1"], ["classifier"]])
def test_cli_refuses_bad_input_in_one_line(argv, capsys):
    parser = build_parser("classifier")
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--help" in err, err


def test_cli_check_passes_on_the_shipped_weights(capsys):
    assert classifier_command.run(argparse.Namespace(classifier_command="check", device="cpu")) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_runs_on_cuda():
    result = C.train_classifier(seed=0, epochs=1, device="cuda", subset=4096)
    assert next(result.model.parameters()).device.type == "cpu"
    assert result.accuracy > 0.5
