"""The colorizer: colour Fashion-MNIST, a few real training steps, colourising files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import zoo
from tests.test_cli import assert_one_line_error, invoke
from zoo.core import data
from zoo.core.runs import read_jsonl
from zoo.engine.evaluator import evaluate
from zoo.tasks.colorize.base import ColorizerPlugin
from zoo.tasks.colorize.color_data import build_color_dataset, estimate_colors, paint, random_colors
from zoo.tasks.colorize.images import read_garment, to_fashion_mnist
from zoo.tasks.colorize.metrics import ColorizationEvidence
from zoo.tasks.colorize.palette import Palette, default_palette, load_palette, parse_color
from zoo_plugins.colorizer.baseline import GrayCopy

TINY = {"train_size": 640, "test_size": 200, "batch_size": 64, "progress": False}
DRESS = data.CLASSES.index("Dress")


@pytest.fixture(scope="module")
def test_split():
    return data.load().test.head(400)


@pytest.fixture(scope="module")
def palette_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("colorizer")
    return zoo.run("colorizer", epochs=5, max_steps=50, out=str(out), seed=0, **TINY)


@pytest.fixture(scope="module")
def color_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("colorizer-color")
    return zoo.run("colorizer", mode="color", epochs=1, max_steps=4, out=str(out), **TINY)


# -- colour Fashion-MNIST -------------------------------------------------------------


def test_builder_matches_pillows_colorize_for_a_known_image_and_palette(test_split):
    colors = {
        name: f"#{(37 * i) % 256:02x}{(91 * i) % 256:02x}{255 - 20 * i:02x}"
        for i, name in enumerate(data.CLASSES)
    }
    palette = Palette.from_mapping(colors)
    built = build_color_dataset(test_split, palette)
    assert built.shape == (len(test_split), 3, 28, 28) and built.dtype == torch.uint8
    for index in (0, 1, 2, 17):  # real test images of several classes
        gray = Image.fromarray(test_split.images[index].numpy())
        colour = colors[data.CLASSES[int(test_split.labels[index])]]
        expected = ImageOps.colorize(gray, black="black", white=colour)  # independent
        expected = torch.from_numpy(np.array(expected)).permute(2, 0, 1)
        assert (built[index].int() - expected.int()).abs().max() <= 1
    assert torch.equal(built, build_color_dataset(test_split, palette))  # deterministic


def test_background_stays_black(test_split):
    background = test_split.images == 0
    assert background.any()
    for rgb in (
        build_color_dataset(test_split, default_palette()),
        paint(test_split.images.unsqueeze(1).float() / 255, random_colors(len(test_split))),
    ):
        assert (rgb.float().sum(dim=1)[background] == 0).all()


def test_shading_is_kept_and_the_colour_is_recovered(test_split):
    gray = test_split.images[:50].unsqueeze(1).float() / 255
    colors = random_colors(50, torch.Generator().manual_seed(0))
    assert torch.allclose(estimate_colors(paint(gray, colors), gray), colors, atol=1e-5)


def test_default_palette_follows_the_paper():
    assert default_palette().colors[DRESS] == parse_color("red")
    assert default_palette().names[data.CLASSES.index("Ankle boot")] == "saddlebrown"
    assert len(set(default_palette().colors)) == 10


def test_palette_files(tmp_path):
    good = tmp_path / "good.toml"
    lines = [f'"{name}" = "#{i:02x}8040"' for i, name in enumerate(data.CLASSES)]
    good.write_text("\n".join(lines))
    assert load_palette(good).colors[3] == parse_color("#038040")
    missing = tmp_path / "missing.toml"
    missing.write_text("\n".join(lines[:8]))
    with pytest.raises(zoo.ConfigError, match="no colour for 'Bag', 'Ankle boot'"):
        load_palette(missing)
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("\n".join([*lines[:9], '"Ankle boot" = "mud"']))
    with pytest.raises(zoo.ConfigError, match="Ankle boot: unknown colour 'mud'"):
        load_palette(invalid)


# -- evaluation -----------------------------------------------------------------------


class SolidRed(ColorizerPlugin):
    """Paints every garment red: right exactly for dresses under the default palette."""

    info = zoo.PluginInfo(name="solid-red", task="colorize", summary="test colorizer")

    def colorize(self, gray, colors=None):
        red = torch.tensor([[1.0, 0.0, 0.0]]).expand(len(gray), 3)
        return paint((gray + 1) / 2, red) * 2 - 1


def test_colour_accuracy_and_errors_have_known_values(test_split):
    evidence = ColorizationEvidence(SolidRed(), test_split, device=torch.device("cpu"))
    results = evaluate(evidence, ["colorization_error", "color_accuracy"])
    dresses = test_split.labels == DRESS
    assert results["color_accuracy"] == pytest.approx(float(dresses.float().mean()))
    assert results["per_class_color_accuracy"]["Dress"] == 1.0
    assert results["per_class_color_accuracy"]["Bag"] == 0.0
    gray_results = evaluate(
        ColorizationEvidence(GrayCopy(), test_split, device=torch.device("cpu")),
        ["colorization_error"],
    )
    gray = test_split.images.float() / 255  # independent: |gray - gray * palette colour|
    colours = torch.tensor([parse_color(c) for c in default_palette().names])[test_split.labels]
    expected = (gray[:, None] - gray[:, None] * colours[:, :, None, None]).abs().mean()
    assert gray_results["l1"] == pytest.approx(float(expected), rel=1e-5)
    only_dresses = data.Split(test_split.images[dresses], test_split.labels[dresses])
    perfect = evaluate(
        ColorizationEvidence(SolidRed(), only_dresses, device=torch.device("cpu")),
        ["colorization_error"],
    )
    assert perfect["l1"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["psnr"] == pytest.approx(100.0)  # capped: the images are identical


# -- training -------------------------------------------------------------------------


def test_a_few_steps_lower_the_l1_loss_and_write_sheets(palette_run):
    losses = read_jsonl(palette_run.path / "losses.jsonl")
    assert len(losses) == 2  # steps 25 and 50
    assert losses[1]["l1"] < 0.8 * losses[0]["l1"]
    for file in ("samples/epoch_001.png", "animation.gif", "loss.png", "eval.json"):
        assert (palette_run.path / file).is_file(), file
    sheet = Image.open(palette_run.path / "samples" / "epoch_001.png")
    assert sheet.size == (10 * 30 + 2, 6 * 30 + 2)  # 10 classes x (gray, output, target) x 2
    config = json.loads((palette_run.path / "config.json").read_text())
    assert config["settings"]["precision"] == "fp32"  # bf16 is unchecked for the colorizer


def test_eval_reproduces_the_trainers_numbers(palette_run):
    results = zoo.evaluate(palette_run.path)
    history = palette_run.history[-1]
    assert results["l1"] == pytest.approx(history["test_l1"], rel=1e-5)
    assert 0.0 <= results["color_accuracy"] <= 1.0
    assert set(results["per_class_color_accuracy"]) == set(data.CLASSES)


def test_l1_only_baseline_trains_no_discriminator(tmp_path):
    run = zoo.run("colorizer", adversarial_weight=0.0, max_steps=2, out=str(tmp_path), **TINY)
    assert set(zoo.load(run.path).model) == {"generator"}
    assert "d_loss" not in run.history[-1]


# -- zoo colorize ---------------------------------------------------------------------


def _photo(test_split, index: int, size: tuple[int, int]) -> Image.Image:
    """A real garment as a product photo: dark on white, enlarged to an odd size."""
    garment = Image.fromarray(255 - test_split.images[index].numpy())
    return ImageOps.pad(garment.resize((size[1], size[1])), size, color=255)


def test_read_garment_recovers_a_fashion_mnist_image(test_split, tmp_path):
    correlations = []
    for index in range(12):
        path = tmp_path / f"{index}.jpg"
        photo = _photo(test_split, index, (97, 61))
        photo.convert("RGB").save(path, quality=95)
        recovered = read_garment(path)
        assert recovered.shape == (28, 28) and recovered.dtype == torch.uint8
        border = torch.cat([recovered[0], recovered[-1], recovered[:, 0], recovered[:, -1]])
        assert border.float().median() <= 10  # dark background, as in Fashion-MNIST
        assert int(recovered.max()) == 255
        rows, cols = torch.nonzero(recovered > 12, as_tuple=True)
        extent = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
        assert extent >= 27  # the longest edge of the garment fills the frame
        # a light background is negated: the photo and its negative give the same image
        assert torch.equal(to_fashion_mnist(photo), to_fashion_mnist(ImageOps.invert(photo)))
        original = test_split.images[index].float()
        pair = torch.stack([recovered.float().flatten(), original.flatten()])
        correlations.append(float(torch.corrcoef(pair)[0, 1]))
    # sharpening and one-pixel shifts cost thin garments (trousers) most: about 0.7
    assert min(correlations) > 0.6 and sum(correlations) / len(correlations) > 0.8, correlations


def test_colorize_round_trips_png_and_jpeg_of_odd_sizes(palette_run, test_split, tmp_path):
    png, jpeg = tmp_path / "dress.png", tmp_path / "boot.jpeg"
    rgba = _photo(test_split, 2, (45, 73)).convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # transparency is flattened onto white
    rgba.save(png)
    _photo(test_split, 0, (101, 33)).convert("CMYK").save(jpeg)
    out = tmp_path / "out"
    result = invoke("colorize", str(palette_run.path), str(png), str(jpeg), "-o", str(out))
    assert result.exit_code == 0, result.output
    for name in ("dress", "boot"):
        small = Image.open(out / f"{name}.png")
        assert small.size == (28, 28) and small.mode == "RGB"
        assert Image.open(out / f"{name}_x8.png").size == (224, 224)
    assert Image.open(out / "sheet.png").size == (3 * 224 + 16, 2 * 228 + 4)
    api_result = zoo.colorize(palette_run.path, [png], out=tmp_path / "api", scale=2)
    assert [p.name for p in api_result.outputs] == ["dress.png"] and not api_result.failures
    assert Image.open(tmp_path / "api" / "dress_x2.png").size == (56, 56)


def test_colorize_never_overwrites_its_inputs(palette_run, test_split, tmp_path):
    photo, sheet = tmp_path / "dress.png", tmp_path / "sheet.png"
    _photo(test_split, 2, (40, 40)).save(photo)
    _photo(test_split, 3, (40, 40)).save(sheet)
    before = photo.read_bytes(), sheet.read_bytes()
    result = zoo.colorize(palette_run.path, [photo, sheet], out=tmp_path)
    assert (photo.read_bytes(), sheet.read_bytes()) == before
    assert result.sheet.name == "sheet_2.png"  # the summary sheet steps aside too
    assert [p.name for p in result.outputs] == ["dress_2.png", "sheet_3.png"]
    assert Image.open(tmp_path / "dress_2.png").size == (28, 28)


def test_epoch_sheet_of_a_small_test_split_leaves_missing_classes_blank(palette_run, tmp_path):
    plugin = zoo.load(palette_run.path).plugin
    split = data.load().test.head(12)
    plugin.save_sheet(split, tmp_path / "sheet.png")
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.size == (10 * 30 + 2, 6 * 30 + 2)
    pixels = np.asarray(sheet.convert("L"))

    def tile(row: int, column: int):
        return pixels[2 + 30 * row : 30 * row + 30, 2 + 30 * column : 30 * column + 30]

    present = set(split.labels.tolist())
    missing = set(range(10)) - present
    assert missing and present
    for column in missing:  # a class with no test image: every row of its column blank
        assert all(tile(row, column).max() == 0 for row in range(6)), column
    for column in present:  # its first example's gray input is drawn
        assert tile(0, column).max() > 0, column


def test_colour_mode_paints_the_requested_colour_and_reports_it(color_run, test_split, tmp_path):
    path = tmp_path / "shirt.png"
    _photo(test_split, 1, (64, 64)).save(path)
    result = invoke(
        "colorize", str(color_run.path), str(path), "--color", "navy", "-o", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    results = zoo.evaluate(color_run.path)
    assert 0.0 <= results["color_accuracy"] <= 1.0 and "color_error" in results
    plugin = zoo.load(color_run.path).plugin  # the requested colour is an input that counts
    gray = data.to_float(test_split.images[:8], plugin.pixel_range)
    red, navy = (torch.tensor([parse_color(c)]).expand(8, 3) for c in ("red", "navy"))
    with torch.no_grad():
        assert not torch.allclose(plugin.colorize(gray, red), plugin.colorize(gray, navy))


def test_colorize_needs_a_colorizer_run(dense_run, tmp_path):
    result = invoke("colorize", str(dense_run.path), str(tmp_path / "x.png"))
    assert_one_line_error(result, 1, "needs a colorizer run")


def test_bad_inputs_fail_one_line_each_and_the_rest_is_still_coloured(
    palette_run, color_run, test_split, tmp_path
):
    good = tmp_path / "good.png"
    _photo(test_split, 5, (50, 50)).save(good)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    out = tmp_path / "out"
    result = invoke(
        "colorize", str(palette_run.path), str(text), str(good), str(corrupt), "-o", str(out)
    )
    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("zoo: error: ") for line in errors)
    assert "notes.png: not an image" in errors[0] and "corrupt.png: damaged image" in errors[1]
    assert (out / "good.png").is_file() and "Traceback" not in result.output

    unknown = invoke("colorize", str(color_run.path), str(good), "--color", "blurple")
    assert_one_line_error(unknown, 2, "unknown colour 'blurple'")
    needs = invoke("colorize", str(color_run.path), str(good))
    assert_one_line_error(needs, 2, "pass --color")
    refused = invoke("colorize", str(palette_run.path), str(good), "--color", "navy")
    assert_one_line_error(refused, 2, "takes no --color")
    not_a_run = invoke("colorize", str(palette_run.path.parent), str(good))
    assert_one_line_error(not_a_run, 1, "no config.json")

    palette = tmp_path / "short.toml"
    palette.write_text('"Dress" = "red"\n')
    short = invoke("run", "colorizer", "--palette", str(palette), "--max-steps", "1")
    assert_one_line_error(short, 2, "--palette", "no colour for 'T-shirt/top'")
    palette.write_text("\n".join(f'"{c}" = "nocolour"' for c in data.CLASSES))
    bad = invoke("run", "colorizer", "--palette", str(palette), "--max-steps", "1")
    assert_one_line_error(bad, 2, "unknown colour 'nocolour'")
