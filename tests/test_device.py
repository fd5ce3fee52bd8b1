"""``--device``: one resolver for every entry point, and a missing GPU is a one-line error
before any work (the CI machine has no GPU: the GPU side is not measured here)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cascadia import cli
from cascadia.learning.device import DeviceError, resolve_device
from cascadia.learning.ensemble import DeepEnsemble, Normalisation

NO_GPU = not torch.cuda.is_available()


def test_auto_and_cpu_resolve_here() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("AUTO").type == want


@pytest.mark.parametrize("word", ["gpu", "cuda:x", "tpu", "cuda:-1"])
def test_unknown_words_are_named(word: str) -> None:
    with pytest.raises(DeviceError, match="--device"):
        resolve_device(word)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_without_a_gpu_names_the_torch_build() -> None:
    with pytest.raises(DeviceError, match=r"sees no CUDA GPU.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="sees no CUDA GPU"):
        resolve_device("cuda:0")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--job", "jobs/train.yaml", "--device", "cuda"],
        ["tune", "--job", "jobs/tune.yaml", "--device", "cuda"],
        ["run", "--catalog", "catalogs/cordex.yaml", "--model", ".", "--device", "cuda"],
        ["demo", "--preset", "tiny", "--out", "never-made", "--device", "cuda"],
        ["validate", "--seeds", "21", "--out", "never-made", "--device", "cuda"],
    ],
)
def test_every_command_refuses_a_missing_gpu_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(Path(__file__).parents[1])
    argv = [a.replace("never-made", str(tmp_path / "never-made")) for a in argv]
    started = time.perf_counter()
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "sees no CUDA GPU" in err[0], err
    assert time.perf_counter() - started < 30
    assert not (tmp_path / "never-made").exists()  # nothing was started


def test_an_ensemble_moved_to_a_device_predicts_the_same_numpy() -> None:
    torch.manual_seed(0)
    norm = Normalisation(
        feature_names=("a", "b"),
        feature_mean=(0.0, 0.0),
        feature_std=(1.0, 1.0),
        target_mean=(13.0,),
        target_std=(0.5,),
        depths=(500.0,),
    )
    from cascadia.learning.models import build_model

    members = [build_model("lstm", n_features=norm.n_inputs, n_depths=1, hidden=8)]
    ensemble = DeepEnsemble(members, norm, {}, [0])
    x = np.random.default_rng(0).normal(size=(400, 2))
    time_axis = np.arange("2000-01-01", "2001-02-04", dtype="datetime64[D]")
    before = ensemble.predict(x, time_axis)
    after = ensemble.to(resolve_device("auto")).predict(x, time_axis)
    assert isinstance(after.mean, np.ndarray)
    np.testing.assert_allclose(after.mean, before.mean, rtol=1e-5, atol=1e-6)
