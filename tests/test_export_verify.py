"""verify-export on the trained Detectron2 fixture: a correct export passes, each planted departure
(size fixed at export, normalisation twice, BGR for RGB, another score threshold) is named at its stage."""

from __future__ import annotations

import json

import pytest

from safepredict import InputError, SafePredictor
from safepredict.cli import main
from safepredict.export.verify import verify_export


@pytest.fixture(scope="module")
def predictor(d2_fixture):
    return SafePredictor.from_checkpoint(d2_fixture.checkpoint, monitor=False, class_names=d2_fixture.class_names)


@pytest.fixture(scope="module")
def exported(d2_fixture, tmp_path_factory):
    """Written by the command: ``safepredict export CHECKPOINT -o model.onnx --json``."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("verify") / "model.onnx"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            [
                "export",
                str(d2_fixture.checkpoint),
                "-o",
                str(out),
                "--json",
                "--class-names",
                ",".join(d2_fixture.class_names),
            ]
        )
    summary = json.loads(stdout.getvalue())
    assert code == 0 and summary["wrote"] == str(out) and out.is_file()
    assert summary["framework"] == "detectron2" and summary["family"] == "faster_rcnn" and summary["opset"] >= 16
    return out


@pytest.fixture(scope="module")
def user_made(exported, tmp_path_factory):
    """The same graph as a user's own export: no safepredict metadata in it."""
    import onnx

    model = onnx.load(str(exported))
    del model.metadata_props[:]
    path = tmp_path_factory.mktemp("user") / "user.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def images(d2_fixture):
    return d2_fixture.dataset.val_images[:3]


def _stage(report, name):
    return next(s for s in report.stages if s.name == name)


def test_a_safepredict_export_passes_through_the_command(d2_fixture, exported, images, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(
        ["verify-export", str(exported), str(d2_fixture.checkpoint), *map(str, images), "--json", "-o", str(out)]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report == json.loads(out.read_text())
    assert [s["name"] for s in report["stages"]] == ["input tensor", "raw outputs", "final detections"]
    assert all(s["ok"] for s in report["stages"]) and report["stages"][2]["measured"]["compared"] > 0


def test_a_correct_user_made_export_passes(d2_fixture, predictor, user_made, images):
    declared = {"color": predictor.contract.input_format}
    report = verify_export(user_made, d2_fixture.checkpoint, images, preprocessing=declared, predictor=predictor)
    assert report.ok, report.describe()
    assert not report.safepredict_metadata


def test_an_onnx_without_metadata_needs_declared_preprocessing(d2_fixture, predictor, user_made, images):
    with pytest.raises(InputError, match="carries no safepredict metadata") as info:
        verify_export(user_made, d2_fixture.checkpoint, images, predictor=predictor)
    assert "--preprocessing" in info.value.fix


def _swapped(color: str) -> str:
    return "BGR" if color == "RGB" else "RGB"


def test_each_planted_departure_is_named_at_its_stage(d2_fixture, predictor, user_made, images, tmp_path):
    import onnx

    contract = predictor.contract
    color = contract.input_format
    # Fixed size: the graph's input frozen at 224 x 224, the deployment resizing every image to it.
    model = onnx.load(str(user_made))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_value = 224
    dims[3].Clear()
    dims[3].dim_value = 224
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    planted = [
        (fixed, {"color": color}, "input tensor", "fixed at export to 224x224"),
        (
            user_made,
            {"color": color, "mean": list(contract.pixel_mean), "std": list(contract.pixel_std)},
            "raw outputs",
            "normalisation applied twice",
        ),
        (user_made, {"color": _swapped(color)}, "input tensor", f"the deployment feeds {_swapped(color)}"),
        (user_made, {"color": color, "score_threshold": 0.6}, "final detections", "score_threshold: the deployment"),
    ]
    for path, declared, stage, words in planted:
        report = verify_export(path, d2_fixture.checkpoint, images, preprocessing=declared, predictor=predictor)
        assert not report.ok, report.describe()
        named = _stage(report, stage)
        assert not named.ok and any(words in d for d in named.departures), report.describe()
        print(report.describe())


def test_the_command_exits_1_on_a_departure(d2_fixture, predictor, user_made, images, capsys):
    declared = json.dumps({"color": _swapped(predictor.contract.input_format)})
    code = main(
        ["verify-export", str(user_made), str(d2_fixture.checkpoint), *map(str, images), "--preprocessing", declared]
    )
    text = capsys.readouterr().out
    assert code == 1 and "DEPARTS" in text and "colour order" in text


def _trace_with_detectron2(d2_fixture, height: int, width: int, out):
    """Detectron2's own ONNX export, as ``tools/deploy/export_model.py --export-method tracing
    --format onnx`` makes it: TracingAdapter over ``model.inference(do_postprocess=False)``,
    TorchScript exporter, traced on one image size."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.export import TracingAdapter
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(d2_fixture.config))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(d2_fixture.checkpoint))
    model.eval()

    def inference(model, inputs):
        return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]

    image = torch.randint(0, 255, (3, height, width), dtype=torch.uint8)
    adapter = TracingAdapter(model, [{"image": image}], inference)
    with torch.no_grad():
        torch.onnx.export(adapter, adapter.flattened_inputs, str(out), opset_version=16, dynamo=False)
    return out


def _traced_at_the_common_size(d2_fixture, predictor, tmp_path):
    """Detectron2's tracing export of the fixture at the size the contract resizes the most common
    validation image size to: ``(traced, images of that size, images by size, the resized size)``."""
    import collections

    import cv2

    from safepredict.engines.ops import shortest_edge_size

    contract = predictor.contract
    by_size = collections.defaultdict(list)
    for path in d2_fixture.dataset.val_images:
        by_size[cv2.imread(str(path)).shape[:2]].append(path)
    size, same = max(by_size.items(), key=lambda kv: len(kv[1]))
    assert len(same) >= 2, "the fixture's validation images all differ in size"
    resized = shortest_edge_size(*size, contract.resize.min_size[0], contract.resize.max_size)
    return _trace_with_detectron2(d2_fixture, *resized, tmp_path / "traced.onnx"), same, by_size, resized


def test_detectron2_s_own_tracing_export_is_verified(d2_fixture, predictor, tmp_path):
    from safepredict.engines.ops import shortest_edge_size

    contract = predictor.contract
    traced, same, by_size, resized = _traced_at_the_common_size(d2_fixture, predictor, tmp_path)
    declared = {"color": contract.input_format}
    # Images the traced size fits (the contract resizes them to it): it matches the contract.
    report = verify_export(traced, d2_fixture.checkpoint, same, preprocessing=declared, predictor=predictor)
    assert report.ok, report.describe()
    assert _stage(report, "final detections").measured["compared"] > 0
    # Images of another size: the size fixed when tracing is named.
    others = [
        p
        for s, paths in by_size.items()
        if shortest_edge_size(*s, contract.resize.min_size[0], contract.resize.max_size) != resized
        for p in paths
    ][:2]
    report = verify_export(traced, d2_fixture.checkpoint, others, preprocessing=declared, predictor=predictor)
    named = _stage(report, "input tensor")
    assert not report.ok and any("fixed at export" in d for d in named.departures), report.describe()
    print(report.describe())


def _as_mmdeploy_layout(traced, out):
    """Detectron2's traced graph with its outputs laid out as MMDeploy's detectors write them:
    ``dets`` (1, N, 5) float (x1, y1, x2, y2, score) and ``labels`` (1, N) int64, nothing else.

    MMDeploy itself (unmaintained since 2024, broken on torch's current exporter) cannot run here;
    the network is the fixture's, the layout MMDeploy's (its ``End2EndModel`` output contract).
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(traced))
    session = ort.InferenceSession(str(traced), providers=["CPUExecutionProvider"])
    feed = {
        i.name: np.zeros([d if isinstance(d, int) else 32 for d in i.shape], np.uint8) for i in session.get_inputs()
    }
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    boxes = next(n for n, v in values.items() if v.ndim == 2 and v.shape[1] == 4)
    scores = next(n for n, v in values.items() if v.ndim == 1 and v.dtype.kind == "f")
    labels = next(n for n, v in values.items() if v.ndim == 1 and v.dtype.kind == "i")
    graph = model.graph
    graph.initializer.extend(
        [
            helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
            helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Unsqueeze", [scores, "axis1"], ["score_column"]),
            helper.make_node("Concat", [boxes, "score_column"], ["dets_2d"], axis=1),
            helper.make_node("Unsqueeze", ["dets_2d", "axis0"], ["dets"]),
            helper.make_node("Unsqueeze", [labels, "axis0"], ["labels"]),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, None, 5]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [1, None]),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def test_an_export_in_mmdeploy_s_dets_layout_is_verified(d2_fixture, predictor, tmp_path):
    contract = predictor.contract
    traced, same, _, _ = _traced_at_the_common_size(d2_fixture, predictor, tmp_path)
    dets = _as_mmdeploy_layout(traced, tmp_path / "end2end.onnx")
    declared = {"color": contract.input_format}
    report = verify_export(dets, d2_fixture.checkpoint, same, preprocessing=declared, predictor=predictor)
    assert report.ok, report.describe()
    final = _stage(report, "final detections")
    assert final.measured["compared"] > 0, report.describe()
    # The same graph told another score threshold than the training one: the threshold is named.
    other = {**declared, "score_threshold": round(predictor.score_threshold + 0.2, 3)}
    report = verify_export(dets, d2_fixture.checkpoint, same, preprocessing=other, predictor=predictor)
    assert not report.ok and any("threshold" in d for d in _stage(report, "final detections").departures), (
        report.describe()
    )
