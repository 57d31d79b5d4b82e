"""``safepredict export`` and ``safepredict verify-export``: an ONNX file that keeps the training contract."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from safepredict._output import add_json_option, message_stream, print_json

EXPORT_EXAMPLES = """\
examples:
  safepredict export output/model_final.pth -o model.onnx           # Detectron2: config.yaml beside it
  safepredict export work_dirs/faster-rcnn/epoch_12.pth -o model.onnx --class-names car,person,bike
  safepredict export output/model_final.pth -o model.onnx --reference safepredict-profile.json --json
"""

VERIFY_EXAMPLES = """\
examples:
  safepredict verify-export model.onnx output/model_final.pth val/*.jpg        # a safepredict export
  safepredict verify-export theirs.onnx output/model_final.pth val/*.jpg \\
      --preprocessing '{"size": [640, 640], "color": "BGR", "mean": [123.7, 116.3, 103.5], "std": [58.4, 57.1, 57.4]}'
  safepredict verify-export model.onnx output/model_final.pth val/*.jpg --json -o report.json
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a checkpoint as ONNX with its training contract in the file (for onnxruntime)",
        description=(
            "Export CHECKPOINT to ONNX. The graph holds the normalisation, the backbone, the neck and the heads' "
            "convolutions (and, for a two-stage model, RoIAlign and the box head); the contract, the class names, "
            "the sha256 of the checkpoint and config, the exporter, the input spec, the post-processing recipe and "
            "the exporting lock travel in the file's metadata. SafePredictor.from_onnx runs it without torch."
        ),
        epilog=EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="the trained checkpoint (its training config found as for predict)")
    p.add_argument("-o", "--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--training-config", type=Path, default=None, help="the training config, if not beside/inside")
    p.add_argument("--class-names", default=None, help="comma-separated class names, if the artifact has none")
    p.add_argument("--reference", type=Path, default=None, help="a reference profile to carry for the monitor")
    p.add_argument(
        "--exporter",
        choices=("auto", "dynamo", "torchscript"),
        default="auto",
        help="torch's exporter: dynamo (onnxscript), TorchScript, or auto (dynamo, else TorchScript)",
    )
    p.add_argument("--trust", action="store_true", help="run the framework's own config loaders (docs/security.md)")
    add_json_option(p, "what was written")
    p.set_defaults(func=_export)

    v = subparsers.add_parser(
        "verify-export",
        help="compare an ONNX model with the framework's evaluation, stage by stage (exit 1 beyond tolerance)",
        description=(
            "Compare ONNX with CHECKPOINT's own evaluation path on IMAGES: the input tensor, the raw network "
            "outputs and the final detections, and name what departs from the training contract (an input size "
            "fixed at export, normalisation twice or missing, colour order, thresholds). An ONNX without "
            "safepredict metadata is read with the --preprocessing your deployment code applies."
        ),
        epilog=VERIFY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("onnx", type=Path, help="the .onnx file (safepredict's, or made elsewhere)")
    v.add_argument("checkpoint", type=Path, help="the checkpoint it was exported from")
    v.add_argument("images", nargs="+", type=Path, help="a few images of the deployment")
    v.add_argument(
        "--preprocessing",
        default=None,
        help="JSON (or a JSON file) of what the deployment code applies: size [H, W] or null, keep_ratio, color, "
        "mean, std (null: 0-255 pixels fed), score_threshold, nms_iou, max_detections",
    )
    v.add_argument("-o", "--out", type=Path, default=None, help="also write the report as JSON to this file")
    v.add_argument("--trust", action="store_true", help="run the framework's own config loaders (docs/security.md)")
    add_json_option(v, "the report")
    v.set_defaults(func=_verify)


def _export(args: argparse.Namespace) -> int:
    from safepredict.predictor import SafePredictor

    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    predictor = SafePredictor.from_checkpoint(
        args.checkpoint, training_config=args.training_config, class_names=names, monitor=False, trust=args.trust
    )
    path = predictor.export(args.out, reference=args.reference, exporter=args.exporter)
    from safepredict.export.onnxfile import read_metadata

    document, _, _ = read_metadata(path)
    assert document is not None
    summary = {
        "wrote": str(path),
        "bytes": path.stat().st_size,
        "framework": document["framework"],
        "family": document["family"],
        "exporter": document["exporter"]["mode"],
        "opset": document["exporter"]["opset"],
        "inside": document["graph"]["inside"],
        "outside": document["graph"]["outside"],
        "graph_sha256": document["graph_sha256"],
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"wrote {path} ({summary['bytes']:,} bytes): {summary['framework']} {summary['family']}, "
            f"{summary['exporter']} exporter, opset {summary['opset']}\n  in the graph: {summary['inside']}\n"
            f"  outside (safepredict, numpy): {summary['outside']}"
        )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from safepredict.export.verify import verify_export
    from safepredict.predictor import SafePredictor

    predictor = SafePredictor.from_checkpoint(args.checkpoint, monitor=False, trust=args.trust)
    report = verify_export(
        args.onnx, args.checkpoint, args.images, preprocessing=args.preprocessing, predictor=predictor
    )
    if args.out is not None:
        args.out.write_text(json.dumps(report.to_json(), indent=2))
        print(f"wrote {args.out}", file=message_stream(args))
    if args.json:
        print_json(report.to_json())
    else:
        print(report.describe())
    sys.stdout.flush()
    return 0 if report.ok else 1
