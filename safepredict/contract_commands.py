"""``safepredict contract``: what a model saw at training, read from its config or checkpoint.

No model is built and nothing is predicted: the training contract (colour order, mean/std,
resize, padding, test-time augmentation, thresholds, classes, architecture) is read by the same
safe readers ``SafePredictor`` uses, and printed in words with where each value came from, or
as one JSON document.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from safepredict._output import add_json_option, jsonable, print_json

EXAMPLES = """\
examples:
  safepredict contract output/model_final.pth               # Detectron2: config.yaml beside it
  safepredict contract work_dirs/faster-rcnn/epoch_12.pth   # mmengine: the config inside it
  safepredict contract output/config.yaml                   # a config alone
  safepredict contract model.pth --training-config train/config.yaml
  safepredict contract output/model_final.pth --json | jq .resize
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "contract",
        help="print what a model saw at training (its training contract), from a config or checkpoint",
        description=(
            "Read the training contract of CONFIG_OR_CHECKPOINT without building the model: colour order, "
            "pixel mean/std, resize, padding, test-time augmentation, post-processing, classes and architecture, "
            "each with the config key it was read from. A checkpoint's training config is found as SafePredictor "
            "finds it (Detectron2: config.yaml beside it; mmengine: the config embedded in it)."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path",
        metavar="CONFIG_OR_CHECKPOINT",
        type=Path,
        help="a training config (.py, .yaml, .yml, .json) or a checkpoint (any other file)",
    )
    p.add_argument(
        "--training-config",
        type=Path,
        default=None,
        help="the config the checkpoint was trained with, when it is not beside or inside it",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="run the framework's own config loader (executes Python / unsafe YAML; see docs/security.md)",
    )
    add_json_option(p, "the contract")
    p.set_defaults(func=_run)


def contract_document(contract: Any) -> dict[str, Any]:
    """The contract as plain JSON values: every field, and per field where it was read from."""
    from safepredict.contract import DIFF_FIELDS

    document: dict[str, Any] = jsonable(contract)
    document["where"] = {name: contract.where(name) for name in DIFF_FIELDS}
    return document


def _run(args: argparse.Namespace) -> int:
    from safepredict.frameworks.artifact import read_contract

    contract = read_contract(args.path, training_config=args.training_config, trust=args.trust)
    if args.json:
        print_json(contract_document(contract))
        return 0
    print(contract.describe())
    print(f"where each setting comes from ({contract.source} unless named):")
    rows = _where_rows(contract)
    width = max(len(name) for name, _ in rows)
    for name, where in rows:
        print(f"  {name:<{width}}  {where}")
    return 0


def _where_rows(contract: Any) -> list[tuple[str, str]]:
    """``(field, key (note))`` for every setting that has a key or a note; the source only where it is another."""
    from safepredict.contract import DIFF_FIELDS

    rows = []
    prefix = f"{contract.source}: "
    for name in DIFF_FIELDS:
        if name not in contract.keys and name not in contract.notes:
            continue  # a setting this framework does not have (Detectron2's resize.scale)
        rows.append((name, contract.where(name).removeprefix(prefix)))
    return rows
