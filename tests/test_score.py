"""Scoring saved PNG masks: image modes, round trip to JSON/CSV, and one error listing every problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.score import AmbiguousMaskWarning, ScoreError, per_sample_path, score_mask_dirs, write_score


def save_l(path: Path, fg: np.ndarray) -> None:
    Image.fromarray(fg.astype(np.uint8) * 255, mode="L").save(path)


def save_palette(path: Path, fg: np.ndarray) -> None:
    """Index 1 = foreground, mapped to a dark grey that convert("L") > 0 would still see, but
    index 1 -> (0, 0, 1) below would not: the index, not the colour, is the label."""
    image = Image.fromarray(fg.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 0, 0, 1] + [0] * (256 * 3 - 6))
    image.save(path)


def save_rgb(path: Path, fg: np.ndarray) -> None:
    # Foreground (0, 0, 2): luminance rounds to 0, so a grey conversion would lose it.
    rgb = np.zeros((*fg.shape, 3), dtype=np.uint8)
    rgb[fg] = (0, 0, 2)
    Image.fromarray(rgb, mode="RGB").save(path)


def save_rgba(path: Path, fg: np.ndarray) -> None:
    # Opaque black background: alpha is 255 everywhere and must not count as foreground.
    rgba = np.zeros((*fg.shape, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[fg, 0] = 255
    Image.fromarray(rgba, mode="RGBA").save(path)


def save_bilevel(path: Path, fg: np.ndarray) -> None:
    Image.fromarray(fg).convert("1").save(path)


def cells(shape: tuple[int, int], *points: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for point in points:
        out[point] = True
    return out


# (name, pred writer, pred mask, gt mask, I, U), on 4x5 masks (H=4, W=5).
CASES = [
    # pred 2 px, gt 2 px, overlap 1 -> I=1, U=3
    ("a_palette", save_palette, cells((4, 5), (0, 0), (0, 1)), cells((4, 5), (0, 1), (1, 1)), 1, 3),
    # pred 3 px, gt 3 px, identical -> I=3, U=3
    ("b_rgb", save_rgb, cells((4, 5), (1, 0), (2, 0), (3, 0)), cells((4, 5), (1, 0), (2, 0), (3, 0)), 3, 3),
    # pred 1 px, gt 4 px, overlap 1 -> I=1, U=4
    ("c_rgba", save_rgba, cells((4, 5), (3, 4)), cells((4, 5), (3, 4), (3, 3), (2, 4), (2, 3)), 1, 4),
    # pred empty, gt empty -> I=0, U=0, IoU 0
    ("d_bilevel", save_bilevel, cells((4, 5)), cells((4, 5)), 0, 0),
    # pred 4 px, gt 2 px, overlap 2 -> I=2, U=4
    ("e_grey", save_l, cells((4, 5), (0, 4), (1, 4), (0, 3), (1, 3)), cells((4, 5), (0, 4), (1, 4)), 2, 4),
]


@pytest.fixture
def mask_dirs(tmp_path: Path) -> tuple[Path, Path]:
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    for name, save_pred, pred, gt, _, _ in CASES:
        save_pred(pred_dir / f"{name}.png", pred)
        save_l(gt_dir / f"{name}.png", gt)
    (gt_dir / "notes.txt").write_text("not a mask")  # non-PNG files are ignored
    return pred_dir, gt_dir


# Its masks use odd foreground values on purpose (e.g. RGB (0, 0, 2)): the warning is expected.
@pytest.mark.filterwarnings("ignore::rrsis_bench.score.AmbiguousMaskWarning")
def test_round_trip_matches_hand_computed(mask_dirs, tmp_path):
    pred_dir, gt_dir = mask_dirs
    metrics, frame = score_mask_dirs(pred_dir, gt_dir)
    assert [(r.sample_id, r.intersection, r.union) for r in frame.itertuples()] == [
        (name, i, u) for name, *_, i, u in CASES
    ]
    # IoUs 1/3, 1, 1/4, 0, 1/2.  oIoU = (1+3+1+0+2)/(3+3+4+0+4) = 7/14 = 50%.
    # mIoU = (1/3 + 1 + 1/4 + 0 + 1/2)/5 = (25/12)/5 = 41.666...%.
    # Pr@0.5: 1, 1/2 -> 40%; Pr@0.6 .. Pr@0.9: only 1 -> 20%.
    assert metrics["oIoU"] == pytest.approx(50.0)
    assert metrics["mIoU"] == pytest.approx(100 * 25 / 12 / 5)
    assert metrics["Pr@0.5"] == pytest.approx(40.0)
    assert all(metrics[f"Pr@{x}"] == pytest.approx(20.0) for x in (0.6, 0.7, 0.8, 0.9))

    json_path, csv_path = write_score(tmp_path / "out" / "score.json", metrics, frame)
    assert csv_path == per_sample_path(json_path) == tmp_path / "out" / "score.per_sample.csv"
    saved = json.loads(json_path.read_text())
    assert list(saved) == [*METRIC_KEYS, "num_samples"]
    assert saved["num_samples"] == 5
    assert saved["oIoU"] == pytest.approx(50.0)
    pd.testing.assert_frame_equal(pd.read_csv(csv_path, dtype={"sample_id": str}), frame)
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["score.json", "score.per_sample.csv"]


def test_every_problem_is_reported_at_once(mask_dirs):
    pred_dir, gt_dir = mask_dirs
    (pred_dir / "a_palette.png").unlink()  # missing prediction
    save_l(pred_dir / "zz_extra.png", cells((4, 5)))  # prediction without ground truth
    save_l(pred_dir / "b_rgb.png", cells((4, 6)))  # 6x4 against 5x4
    (pred_dir / "c_rgba.png").write_bytes(b"not a png")  # unreadable
    with pytest.raises(ScoreError) as info:
        score_mask_dirs(pred_dir, gt_dir)
    message = str(info.value)
    assert len(info.value.problems) == 4
    assert f"missing prediction {pred_dir / 'a_palette.png'}" in message
    assert str(pred_dir / "zz_extra.png") in message
    assert "size mismatch" in message and "6x4" in message and "5x4" in message and "b_rgb.png" in message
    assert f"cannot read {pred_dir / 'c_rgba.png'}" in message
    assert isinstance(info.value, ValueError)
    assert "Fix:" in message


def test_missing_and_empty_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScoreError) as info:
        score_mask_dirs(tmp_path / "nowhere", empty)
    assert info.value.problems == [
        f"prediction folder {tmp_path / 'nowhere'} does not exist.",
        f"ground-truth folder {empty} contains no PNG files.",
    ]
    save_l(empty / "a.png", cells((2, 2)))
    with pytest.raises(ScoreError) as info:
        score_mask_dirs(tmp_path / "nowhere", empty)
    assert info.value.problems == [f"prediction folder {tmp_path / 'nowhere'} does not exist."]


# Its masks use odd foreground values on purpose (e.g. RGB (0, 0, 2)): the warning is expected.
@pytest.mark.filterwarnings("ignore::rrsis_bench.score.AmbiguousMaskWarning")
def test_alpha_is_ignored_and_modes_without_a_zero_are_problems(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[..., 1] = 255  # opaque everywhere
    la[0, 0, 0] = 7  # one foreground pixel
    Image.fromarray(la, mode="LA").save(pred_dir / "la.png")
    save_l(gt_dir / "la.png", cells((2, 2), (0, 0)))
    # PIL reads by content, so a CMYK JPEG saved under a .png name is opened as CMYK.
    Image.new("CMYK", (2, 2)).save(pred_dir / "cmyk.png", format="JPEG")
    save_l(gt_dir / "cmyk.png", cells((2, 2)))
    with pytest.raises(ScoreError) as info:
        score_mask_dirs(pred_dir, gt_dir)
    assert len(info.value.problems) == 1
    assert "cmyk.png" in info.value.problems[0] and "'CMYK'" in info.value.problems[0]
    (pred_dir / "cmyk.png").unlink()
    (gt_dir / "cmyk.png").unlink()
    metrics, _ = score_mask_dirs(pred_dir, gt_dir)
    assert metrics["mIoU"] == 100.0  # I = U = 1


def test_write_score_needs_every_metric(tmp_path):
    with pytest.raises(ValueError, match="mIoU"):
        write_score(tmp_path / "s.json", {"oIoU": 1.0}, pd.DataFrame())
    assert list(tmp_path.iterdir()) == []


def test_non_binary_masks_warn_and_threshold_reads_value_above_it(tmp_path):
    """A grey-level mask (0/100/200) is read as nonzero = foreground with a warning naming the file;
    threshold=T makes value > T the foreground."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    pred = np.array([[0, 100, 200, 200]], dtype=np.uint8)
    Image.fromarray(pred, mode="L").save(pred_dir / "s.png")
    save_l(gt_dir / "s.png", np.array([[False, False, True, True]]))
    with pytest.warns(AmbiguousMaskWarning, match=r"1 mask file\(s\) hold values other than 0, 1 and 255") as caught:
        metrics, frame = score_mask_dirs(pred_dir, gt_dir)
    assert str(pred_dir / "s.png") in str(caught[0].message) and "threshold=" in str(caught[0].message)
    assert (frame.loc[0, "intersection"], frame.loc[0, "union"]) == (2, 3)  # 100 counted as foreground
    metrics, frame = score_mask_dirs(pred_dir, gt_dir, threshold=127)
    assert (frame.loc[0, "intersection"], frame.loc[0, "union"]) == (2, 2)
    assert metrics["mIoU"] == 100.0


def test_binary_masks_do_not_warn(tmp_path, recwarn):
    pred_dir, gt_dir = tmp_path / "binary_pred", tmp_path / "binary_gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    fg = np.array([[True, False], [False, True]])
    save_l(pred_dir / "x.png", fg)  # 0/255
    Image.fromarray(fg.astype(np.uint8), mode="L").save(gt_dir / "x.png")  # 0/1
    score_mask_dirs(pred_dir, gt_dir)
    assert not [w for w in recwarn if issubclass(w.category, AmbiguousMaskWarning)]


def test_score_cli_prints_the_warning_and_takes_threshold(tmp_path, capsys):
    from rrsis_bench.cli import main

    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    Image.fromarray(np.array([[0, 100, 200]], dtype=np.uint8), mode="L").save(pred_dir / "s.png")
    save_l(gt_dir / "s.png", np.array([[False, False, True]]))
    assert main(["score", f"pred={pred_dir}", f"gt={gt_dir}", f"out={tmp_path / 'a.json'}"]) == 0
    assert "warning:" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.json").read_text())["mIoU"] == 50.0
    assert main(["score", f"pred={pred_dir}", f"gt={gt_dir}", f"out={tmp_path / 'b.json'}", "threshold=150"]) == 0
    assert "warning:" not in capsys.readouterr().out
    assert json.loads((tmp_path / "b.json").read_text())["mIoU"] == 100.0
    assert main(["score", f"pred={pred_dir}", f"gt={gt_dir}", "threshold=high"]) == 2
