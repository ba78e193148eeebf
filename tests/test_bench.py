"""zoo bench and the speed settings (layout, compile, threads, precision) of every run."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests.test_cli import assert_one_line_error, invoke
from zoo.engine.devices import bf16_is_fast, resolve_precision
from zoo.engine.trainer import setup_modules, step_marker

QUICK = ("--steps", "3", "--windows", "3", "--warmup", "1")


def test_bench_counts_the_flops_of_forward_and_backward():
    result = invoke("bench", "dense", "--batch-size", "64", "--json", *QUICK)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    # 784-128-10: each matrix product is 2*B*in*out FLOPs forward; backward needs the
    # weight gradient of both layers and the input gradient of the second only.
    forward = 2 * 64 * (784 * 128 + 128 * 10)
    backward = 2 * 64 * 784 * 128 + 2 * (2 * 64 * 128 * 10)
    assert row["flops_per_step"] == forward + backward
    assert len(row["window_images_per_s"]) == 3
    assert row["images_per_s"] == sorted(row["window_images_per_s"])[1]  # the median
    assert row["ms_per_step"] == pytest.approx(64 / row["images_per_s"] * 1000, rel=1e-2)
    assert row["fraction_of_peak"] > 0 and row["peak_gflops"] > 0


def test_bench_table_has_one_row_per_combination(tmp_path):
    output = tmp_path / "bench.json"
    result = invoke(
        "bench", "cnn", "--batch-size", "16,32", "--layout", "contiguous,channels-last",
        "-o", str(output), *QUICK,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["PLUGIN", "PRECISION", "BATCH"]
    assert len(lines) == 5  # header + 2 batch sizes x 2 layouts
    saved = json.loads(output.read_text())["results"]
    assert [(r["batch_size"], r["channels_last"]) for r in saved] == [
        (16, False),
        (16, True),
        (32, False),
        (32, True),
    ]


def test_profile_lists_where_the_step_time_goes(tmp_path):
    output = tmp_path / "bench.json"
    result = invoke("bench", "dense", "--profile", "4", "--precision", "fp32", "--batch-size",
                    "64", "-o", str(output), *QUICK)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "where dense's step goes (fp32, batch 64, contiguous)" in result.stdout
    (row,) = json.loads(output.read_text())["results"]
    ops = row["top_ops"]
    assert len(ops) == 4
    shares = [op["share"] for op in ops]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1
    # a two-layer perceptron spends much of its time in matrix products
    assert any(op["op"] in ("aten::addmm", "aten::mm") for op in ops), ops
    assert all(op["ms_per_step"] > 0 and op["calls_per_step"] > 0 for op in ops)
    assert "profiler_start" not in result.output  # the profiler's own chatter is hidden


@pytest.mark.parametrize("bf16_cpu", [False, True])
def test_bench_times_what_zoo_run_trains_with(monkeypatch, bf16_cpu):
    """With no options, each row has the batch size, precision ('auto' resolved on this
    CPU, bf16-capable or not) and layout that `zoo run NAME` records in config.json."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: bf16_cpu)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16_cpu)
    for name in ("cnn", "gan"):
        result = invoke("bench", name, "--json", "--device", "cpu", *QUICK)
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.stdout)
        run = zoo.api.prepare(name, {"device": "cpu"}).to_dict()
        settings = run["settings"]
        assert (row["batch_size"], row["channels_last"], row["compiled"]) == (
            settings["batch_size"], settings["channels_last"], settings["compile"],
        )  # fmt: skip
        assert row["precision"] == run["resolved"]["precision"]
        assert set(row["sources"].values()) == {"plugin"}
    # the cnn trains channels-last in batches of 32; the plain gan takes bf16 (its logit
    # layer in fp32) exactly where the CPU is fast at it
    assert zoo.api.prepare("cnn", {}).settings.batch_size == 32
    assert row["precision"] == ("bf16" if bf16_cpu else "fp32")


def test_bench_table_marks_where_each_value_came_from():
    result = invoke("bench", "cnn", "--batch-size", "16", *QUICK)
    assert result.exit_code == 0, result.output
    header, row = result.stdout.strip().splitlines()
    assert header.split()[:5] == ["PLUGIN", "PRECISION", "BATCH", "LAYOUT", "COMPILE"]
    assert "16 [cli]" in row and "channels-last [plugin]" in row and "no [plugin]" in row
    assert re.search(r"\b(fp32|bf16) \[plugin\]", row), row


def test_the_bench_grid_is_reachable_from_python():
    """zoo.bench: the grid the CLI prints, one result per combination, for any caller."""
    seen = []
    results = zoo.bench("dense", batch_size=[16, 32], precision="fp32", steps=2, windows=1,
                        warmup=1, device="cpu", on_result=seen.append)  # fmt: skip
    assert [r.batch_size for r in results] == [16, 32] and seen == results
    assert all(r.precision == "fp32" and r.images_per_s > 0 for r in results)
    assert results[0].sources == {"batch_size": "call", "precision": "call",
                                  "channels_last": "plugin", "compile": "plugin"}  # fmt: skip
    (own,) = zoo.bench("dense", steps=2, windows=1, warmup=1, device="cpu")
    assert own.batch_size == zoo.get_plugin("dense").defaults["batch_size"]


def test_bench_errors_are_one_line():
    assert_one_line_error(invoke("bench", "nosuch"), 2, "unknown plugin")
    assert_one_line_error(invoke("bench", "cnn", "--layout", "diagonal"), 2, "--layout")
    assert_one_line_error(invoke("bench", "cnn", "--batch-size", "x"), 2, "--batch-size")
    assert_one_line_error(invoke("bench", "fgsm"), 2, "trains nothing")


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run.path / "model.safetensors"))


SMALL = {
    "train_size": 256,
    "test_size": 64,
    "max_steps": 4,
    "progress": False,
    "seed": 5,
    "precision": "fp32",
}


def test_channels_last_changes_the_layout_not_the_result(tmp_path):
    # without dropout: its masks are drawn in memory order, which the layout changes
    plain = zoo.run("cnn", dropout=0.0, channels_last=False, out=str(tmp_path), **SMALL)
    fast = zoo.run("cnn", dropout=0.0, out=str(tmp_path), **SMALL)
    # channels-last is the cnn's default: faster on this CPU (RESULTS.md)
    assert json.loads((fast.path / "config.json").read_text())["settings"]["channels_last"]
    settings = zoo.api.prepare("cnn", {}).settings  # ... and the trainer lays the weights out so
    cnn = zoo.get_plugin("cnn")(zoo.get_plugin("cnn").Config())
    conv = next(m for m in setup_modules(cnn, torch.device("cpu"), settings).modules()
                if isinstance(m, torch.nn.Conv2d))  # fmt: skip
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for key, value in _weights(plain).items():
        assert torch.allclose(value, _weights(fast)[key], atol=1e-5), key


def test_compile_changes_the_speed_not_the_result(tmp_path):
    plain = _weights(zoo.run("dense", out=str(tmp_path), **SMALL))
    compiled = _weights(zoo.run("dense", compile=True, out=str(tmp_path), **SMALL))
    assert plain.keys() == compiled.keys()  # no _orig_mod prefixes in checkpoints
    settings = zoo.api.prepare("dense", {"compile": True}).settings
    dense = zoo.get_plugin("dense")(zoo.get_plugin("dense").Config())
    modules = setup_modules(dense, torch.device("cpu"), settings)
    assert all(getattr(m, "_compiled_call_impl", None) for m in modules.values())  # compiled
    for key, value in plain.items():
        assert torch.allclose(value, compiled[key], atol=1e-5), key


NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@pytest.mark.parametrize(
    ("plugin", "device"), [("dense", "cpu"), pytest.param("gan", "cuda", marks=NEEDS_CUDA)]
)
def test_reduce_overhead_compile_trains_as_eager(tmp_path, monkeypatch, plugin, device):
    """On CUDA reduce-overhead replays each network as a CUDA graph (elsewhere: inductor
    alone). A replay that read a stale batch, or an output a later replay overwrote,
    would move the weights elsewhere; a graph torch skipped fails the run here."""
    from torch._dynamo.utils import counters
    from torch._inductor import config as inductor_config
    from torch._inductor import cudagraph_trees

    monkeypatch.setattr(inductor_config.triton, "cudagraph_or_error", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    replays, replay = [], cudagraph_trees.CUDAGraphNode.run
    monkeypatch.setattr(cudagraph_trees.CUDAGraphNode, "run",
                        lambda node, inputs: replays.append(1) or replay(node, inputs))  # fmt: skip
    steps = {"max_steps": 6, "train_size": 384} if device == "cuda" else {}  # 4 replayed
    train = functools.partial(zoo.run, plugin, device=device, out=str(tmp_path),
                              **{**SMALL, **steps})  # fmt: skip
    eager = _weights(train())
    counters.clear()
    graphs = train(compile=True, compile_mode="reduce-overhead")
    recorded = json.loads((graphs.path / "config.json").read_text())["settings"]
    assert recorded["compile_mode"] == "reduce-overhead"
    graphs = _weights(graphs)
    assert eager.keys() == graphs.keys()
    if device == "cpu":  # inductor's kernels, as plain --compile
        for key, value in eager.items():
            assert torch.allclose(value, graphs[key], atol=1e-5), key
        return
    assert counters["inductor"]["cudagraph_skips"] == 0 and replays, "no CUDA graph replayed"
    inductor_only = _weights(train(compile=True))  # the same kernels, launched one by one
    for key, value in inductor_only.items():
        assert torch.allclose(value, graphs[key], atol=1e-6), key
    # against eager, Adam's first steps (+-lr) flip where rounding flips a gradient's sign
    far = sum(int((~torch.isclose(value, graphs[key], rtol=0, atol=1e-4)).sum())
              for key, value in eager.items())  # fmt: skip
    assert far <= 1e-3 * sum(value.numel() for value in eager.values())


def test_cuda_graph_modes_mark_each_step_on_cuda_only():
    graphs = zoo.api.prepare("gan", {"compile": True, "compile_mode": "reduce-overhead"}).settings
    assert step_marker(torch.device("cuda"), graphs) is torch.compiler.cudagraph_mark_step_begin
    assert step_marker(torch.device("cpu"), graphs) is None
    no_graphs = {"compile": True, "compile_mode": "max-autotune-no-cudagraphs"}
    for values in ({"compile": True}, no_graphs):
        assert step_marker(torch.device("cuda"), zoo.api.prepare("gan", values).settings) is None


def test_compile_mode_without_compile_is_one_line(tmp_path):
    result = invoke("run", "dense", "--compile-mode", "reduce-overhead", "--out", str(tmp_path))
    assert_one_line_error(result, 2, "--compile-mode reduce-overhead", "add --compile")
    assert not any(tmp_path.iterdir())
    bench = invoke("bench", "dense", "--compile-mode", "reduce-overhead", *QUICK)
    assert_one_line_error(bench, 2, "add --compile")


@pytest.mark.parametrize("plugin", ["wgan_gp", "dragan"])
def test_gradient_penalty_gans_refuse_compile_in_one_line(tmp_path, plugin):
    result = invoke("run", plugin, "--compile", "--out", str(tmp_path))
    assert_one_line_error(result, 2, f"plugin '{plugin}' cannot be compiled", "double backward")
    assert not any(tmp_path.iterdir())


def test_torch_compile_still_lacks_the_penalty_s_double_backward():
    """Why wgan_gp and dragan refuse --compile; once torch can, this fails: lift it."""
    critic = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    critic.compile()
    points = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"double backward|create_graph=False"):
        (gradient,) = torch.autograd.grad(critic(points).sum(), points, create_graph=True)
        gradient.norm().backward()


def test_bench_gives_the_compile_mode_to_its_compiled_rows(tmp_path):
    """Both precisions, whatever this CPU's auto would pick (bf16 compiles other kernels)."""
    output = tmp_path / "bench.json"
    result = invoke("bench", "dense", "--precision", "fp32,bf16", "--compile", "no,yes",
                    "--compile-mode", "reduce-overhead", "-o", str(output), *QUICK)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(output.read_text())["results"]
    modes = [(r["precision"], r["compiled"], r["compile_mode"]) for r in rows]
    assert modes == [(precision, *mode) for precision in ("fp32", "bf16")
                     for mode in ((False, None), (True, "reduce-overhead"))]  # fmt: skip
    table = result.stdout.splitlines()
    assert "no [cli]" in table[1] and "reduce-overhead [cli]" in table[2]
    assert "no [cli]" in table[3] and "reduce-overhead [cli]" in table[4]


def test_threads_setting_is_applied(tmp_path):
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2  # differs from what torch had, so the test can fail
    try:
        zoo.run("dense", threads=wanted, out=str(tmp_path), **SMALL)
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


def test_auto_precision_follows_the_cpus_bf16_support():
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    fast = any(flag in flags for flag in ("amx_bf16", "avx512_bf16"))
    cpu = torch.device("cpu")
    assert bf16_is_fast(cpu) == fast  # torch's check agrees with the kernel's CPU flags
    assert resolve_precision("auto", cpu) == ("bf16" if fast else "fp32")


@pytest.mark.parametrize(("amx", "avx512_bf16", "expected"), [
    (True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32"),
])  # fmt: skip
def test_auto_precision_picks_bf16_exactly_where_a_cpu_has_it(
    monkeypatch, amx, avx512_bf16, expected
):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"  # explicit wins


@pytest.mark.parametrize("fast", [True, False])
def test_the_gan_takes_bf16_with_fp32_logits_on_fast_cpus_only(monkeypatch, fast):
    """Measured (RESULTS.md, issue 18): the plain gan keeps its FD in bf16 when its
    discriminator's logit layer stays fp32, on a CPU; on CUDA and for the variants not
    measured, auto stays fp32."""
    from zoo import api

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: fast)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    gan = api.prepare("gan", {"device": "cpu"})
    assert gan.settings.precision == "auto"
    assert gan.settings.fp32_modules == ("discriminator.fc.3",)
    assert gan.to_dict()["resolved"]["precision"] == ("bf16" if fast else "fp32")
    for variant in ("cgan", "dragan", "wgan"):
        assert api.prepare(variant, {"device": "cpu"}).to_dict()["resolved"]["precision"] == "fp32"
    cuda = torch.device("cuda")
    assert (
        resolve_precision("auto", cuda, zoo.get_plugin("gan").auto_bf16_devices, fast=True)
        == "fp32"
    )
    assert resolve_precision("auto", cuda, fast=True) == "bf16"  # the classifiers' policy
