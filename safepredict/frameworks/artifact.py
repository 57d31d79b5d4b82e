"""Which framework a checkpoint belongs to, where its training config is, and how inference differs.

:func:`discover` is the one entry: it reads the checkpoint once (weights-only), tells the
framework from its content, hands the loaded data to that framework's reader
(``safepredict.frameworks.<name>.contract``), and returns a :class:`TrainingArtifact` carrying
the training contract, the inference contract, their diff and the checkpoint data itself, so
nothing later has to read the file again.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from safepredict.contract import Discrepancy, TrainingContract, check_training_config, config_diff, diff
from safepredict.errors import InputError, UnsupportedModelError
from safepredict.frameworks.checkpoint import detect_framework, framework_of_config, load_checkpoint

__all__ = ["CONFIG_SUFFIXES", "TrainingArtifact", "discover", "read_contract"]


@attrs.frozen
class TrainingArtifact:
    """A checkpoint with its training contract and, if given, the inference config's contract.

    ``training_cfg``/``inference_cfg`` are the framework's own config objects (a yacs
    ``CfgNode``, an mmengine ``Config``, a LazyConfig ``DictConfig``).
    ``discrepancies`` holds the :func:`diff` of the two contracts plus the internal traps of
    the training config.
    """

    framework: str
    checkpoint: Path
    training_contract: TrainingContract
    inference_contract: TrainingContract | None
    training_cfg: Any = attrs.field(eq=False, repr=False)
    inference_cfg: Any = attrs.field(eq=False, repr=False)
    training_source: str
    inference_source: str | None
    dataset_meta: dict[str, Any] | None = attrs.field(eq=False)
    discrepancies: tuple[Discrepancy, ...]
    # What the checkpoint file holds, as read once by discover(): the adapter loads these weights
    # instead of reading the file again.
    checkpoint_data: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    # Config keys outside the contract whose values differ between the two configs (FC_DIM, RPN
    # settings...): named, though the model is built from training and ignores them.
    config_differences: tuple[Discrepancy, ...] = ()

    @property
    def contract(self) -> TrainingContract:
        return self.training_contract

    def errors(self) -> tuple[Discrepancy, ...]:
        return tuple(d for d in self.discrepancies if d.severity == "error")

    def describe(self) -> str:
        lines = [f"checkpoint {self.checkpoint}", self.training_contract.describe()]
        if self.inference_source:
            lines.append(f"inference config: {self.inference_source}")
        if self.discrepancies:
            lines.append(f"{len(self.discrepancies)} difference(s):")
            lines.extend("  " + d.describe().replace("\n", "\n  ") for d in self.discrepancies)
        else:
            lines.append("no differences")
        return "\n".join(lines)


def _reader(framework: str) -> Any:
    return importlib.import_module(f"safepredict.frameworks.{framework}.contract")


def discover(
    checkpoint: str | Path,
    config: Any = None,
    *,
    training_config: Any = None,
    overrides: Mapping[str, Any] | None = None,
    trust: bool = False,
) -> TrainingArtifact:
    """Find the training artifact of ``checkpoint``: which framework, its training config, the diff.

    The framework is told by the checkpoint's content. The training config is read from the
    artifact itself (mmengine: the config text embedded in the checkpoint; Detectron2:
    ``config.yaml`` beside the checkpoint, as training writes it into ``OUTPUT_DIR``), or from
    ``training_config`` when you say which file (or config object) the model was trained with.
    ``config`` is the config you mean to infer with: it is read too and diffed against training.
    ``overrides`` (contract field -> value) are applied on top of the inference side (the
    training contract when no ``config`` is given) and show up in the diff.

    No code in the artifact runs unless ``trust=True``: configs are read by safe readers (see
    docs/security.md), the checkpoint always with ``weights_only=True``.

    Raises :class:`~safepredict.errors.TrainingArtifactNotFound` when no training config can be
    found, naming what to pass, :class:`~safepredict.errors.UntrustedCodeError` for a config that
    would run code, and :class:`~safepredict.errors.UnsupportedModelError` for a model family
    safepredict does not run.
    """
    artifact = _read_artifact(Path(checkpoint), config, training_config, trust)
    check_supported(artifact.training_contract)
    if overrides:
        base = artifact.inference_contract or artifact.training_contract
        inference = base.with_overrides(overrides)
        discrepancies = diff(artifact.training_contract, inference) + check_training_config(artifact.training_contract)
        artifact = attrs.evolve(artifact, inference_contract=inference, discrepancies=discrepancies)
    return artifact


def _read_artifact(path: Path, config: Any, training_config: Any, trust: bool) -> TrainingArtifact:
    data = load_checkpoint(path)
    framework = detect_framework(data, path)
    artifact: TrainingArtifact = _reader(framework).discover(
        path, data, config=config, training_config=training_config, trust=trust
    )
    return attrs.evolve(artifact, checkpoint_data=data, config_differences=_config_differences(artifact))


def _config_differences(artifact: TrainingArtifact) -> tuple[Discrepancy, ...]:
    """The whole-config diff beyond the contract, when an inference config was given."""
    if artifact.inference_cfg is None or artifact.training_cfg is None:
        return ()
    from safepredict.frameworks.base import flatten_config

    keys = importlib.import_module(f"safepredict.frameworks.{artifact.framework}.keys")
    covered = set(artifact.training_contract.keys.values())
    covered |= {d.framework_key for d in artifact.discrepancies}
    return config_diff(
        flatten_config(artifact.training_cfg),
        flatten_config(artifact.inference_cfg),
        covered=covered,
        category_of=keys.config_category,
        training_source=artifact.training_source,
        inference_source=artifact.inference_source or "inference config",
    )


def supported_families(framework: str) -> dict[str, str]:
    """What safepredict runs for ``framework``: family -> what it gives."""
    keys = importlib.import_module(f"safepredict.frameworks.{framework}.keys")
    if hasattr(keys, "SUPPORTED"):
        return dict(keys.SUPPORTED)
    return {path.rsplit(".", 1)[-1]: kind for path, kind in keys.SUPPORTED_BASES}


def check_supported(contract: TrainingContract) -> None:
    """Raise UnsupportedModelError, naming the family and what is supported, for a model not run."""
    keys = importlib.import_module(f"safepredict.frameworks.{contract.framework}.keys")
    problem = keys.family_problem(contract.meta_architecture)
    if problem is None:
        return
    supported = "; ".join(f"{name}: {kind}" for name, kind in supported_families(contract.framework).items())
    raise UnsupportedModelError(
        f"{contract.source} trains {problem}, which safepredict does not run. Supported: {supported}",
        expected=sorted(supported_families(contract.framework)),
        found=contract.meta_architecture,
        source=contract.source,
        fix="run this model with the framework's own tools; safepredict's contract and diff "
        "(safepredict.read_contract, `safepredict contract`) still read its config",
    )


# What a config file is called; anything else given as a path is taken for a checkpoint.
CONFIG_SUFFIXES = frozenset({".py", ".yaml", ".yml", ".json"})


def read_contract(
    path: Any,
    *,
    training_config: Any = None,
    framework: str | None = None,
    trust: bool = False,
) -> TrainingContract:
    """What a model saw at training: the contract of a config or of a checkpoint, no model built.

    ``path`` is a training config (a ``.py``/``.yaml``/``.yml``/``.json`` file, or a framework
    config object) or a checkpoint (any other file). A checkpoint's training config is found as
    :func:`discover` finds it (``config.yaml`` beside a Detectron2 checkpoint, the text embedded
    in an mmengine one; ``training_config=`` when it is elsewhere), its progress is read from it,
    and the class names come from the ``safepredict-classes.json`` a training hook wrote beside it
    where there is one (as ``SafePredictor`` takes them: a Detectron2 config records none). Read
    by the safe readers unless ``trust=True`` (which runs the framework's own loader). No model is
    built.
    """
    if isinstance(path, str | Path) and Path(path).suffix.lower() not in CONFIG_SUFFIXES:
        checkpoint = Path(path)
        # Any family: the contract of a model safepredict does not run is still worth reading.
        artifact = _read_artifact(checkpoint, None, training_config, trust)
        return _with_bundle_class_names(artifact.training_contract, checkpoint)
    if training_config is not None:
        raise InputError(
            "training_config= is for a checkpoint; a config is its own training config",
            found=str(path),
            fix="pass the config alone, or the checkpoint with training_config=",
        )
    name = framework or framework_of_config(path)
    contract: TrainingContract = _reader(name).read_contract(path, trust=trust)
    return contract


def _with_bundle_class_names(contract: TrainingContract, checkpoint: Path) -> TrainingContract:
    """The class names the training hook wrote beside the checkpoint, as SafePredictor takes them."""
    from safepredict import bundle

    found = bundle.find(checkpoint)
    names = found.class_names()
    if names is None or len(names) != contract.num_classes:
        return contract
    notes = dict(contract.notes)
    notes["class_names"] = f"{found.classes} (written by the training hook)"
    return attrs.evolve(contract, class_names=names, notes=notes)
