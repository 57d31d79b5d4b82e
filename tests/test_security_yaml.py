"""Opening a stranger's Detectron2 model runs none of the stranger's code.

A ``config.yaml`` beside the weights (yacs) or a LazyConfig ``.yaml``/``.py`` is built to write a
marker file when its payload runs; each test asserts the typed error and no marker. The trusted
path shows the payloads are live. The equality tests read Detectron2's yacs model zoo with both
loaders and round-trip model-zoo LazyConfigs through ``LazyConfig.save``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from safepredict.errors import ConfigError, SafePredictError, UntrustedCodeError
from safepredict.frameworks import safe_yaml


def marker_of(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def assert_refused(exc: pytest.ExceptionInfo[Any], source: Path | str, marker: Path) -> None:
    assert isinstance(exc.value, UntrustedCodeError)
    assert str(source) in str(exc.value.source)
    assert "trust=True" in exc.value.fix and "--trust" in exc.value.fix
    assert not marker.exists(), "the payload ran"


YACS = """\
MODEL:
  META_ARCHITECTURE: GeneralizedRCNN
  ROI_HEADS:
    NUM_CLASSES: 3
INPUT:
  MIN_SIZE_TEST: 600
"""


def _hostile_yaml(marker: Path) -> dict[str, str]:
    return {
        "object/apply": f"  NAME: !!python/object/apply:os.system ['touch {marker}']\n",
        "object/new": f"  NAME: !!python/object/new:subprocess.Popen [[touch, {marker}]]\n",
        "object": "  NAME: !!python/object:subprocess.Popen {}\n",
        "name": "  NAME: !!python/name:os.system ''\n",
        "module": "  NAME: !!python/module:os ''\n",
        "explicit tag": f"  NAME: !<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']\n",
    }


@pytest.mark.parametrize("kind", list(_hostile_yaml(Path("/m"))))
def test_python_tag_in_yaml_is_refused(kind: str, tmp_path: Path) -> None:
    marker = marker_of(tmp_path)
    text = YACS + "DATASETS:\n" + _hostile_yaml(marker)[kind]
    with pytest.raises(UntrustedCodeError) as exc:
        safe_yaml.safe_load(text, "config.yaml")
    assert "!!python/" in str(exc.value) and "config.yaml, line 8" in str(exc.value)
    assert_refused(exc, "config.yaml", marker)


def _d2_checkpoint(path: Path) -> Path:
    torch = pytest.importorskip("torch")
    torch.save({"model": {"backbone.bottom_up.stem.conv1.weight": torch.zeros(1)}, "iteration": 10}, str(path))
    return path


def test_hostile_config_yaml_beside_the_weights_is_refused(tmp_path: Path, caplog: Any) -> None:
    pytest.importorskip("detectron2")
    from safepredict.frameworks.checkpoint import load_checkpoint
    from safepredict.frameworks.detectron2.contract import discover, load_config

    marker = marker_of(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(YACS + f"OUTPUT_DIR: !!python/object/apply:os.system ['touch {marker}']\n")
    weights = _d2_checkpoint(tmp_path / "model_final.pth")
    with pytest.raises(UntrustedCodeError) as exc:
        discover(weights, load_checkpoint(weights))
    assert_refused(exc, config, marker)
    with pytest.raises(UntrustedCodeError):
        load_config(config)
    assert not marker.exists()
    # Live: Detectron2's merge_from_file falls back to yaml.unsafe_load and runs it.
    with caplog.at_level(logging.INFO, logger="safepredict"):
        try:
            load_config(config, trust=True)
        except SafePredictError:
            pass  # the os.system result is no valid OUTPUT_DIR; the payload has run by then
    assert marker.exists()
    assert "trusted: running Detectron2's own config loader" in caplog.text


def test_safepredictor_from_checkpoint_refuses_a_hostile_config_yaml(tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    from safepredict import SafePredictor

    marker = marker_of(tmp_path)
    (tmp_path / "config.yaml").write_text(YACS + f"SEED: !!python/object/apply:os.system ['touch {marker}']\n")
    weights = _d2_checkpoint(tmp_path / "model_final.pth")
    with pytest.raises(UntrustedCodeError):
        SafePredictor.from_checkpoint(weights)
    assert not marker.exists()


def test_python_tag_in_a_base_is_refused_naming_the_base(tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    from safepredict.frameworks.detectron2.contract import load_config

    marker = marker_of(tmp_path)
    (tmp_path / "base.yaml").write_text(f"SEED: !!python/object/apply:os.system ['touch {marker}']\n")
    (tmp_path / "config.yaml").write_text("_BASE_: base.yaml\n" + YACS)
    with pytest.raises(UntrustedCodeError) as exc:
        load_config(tmp_path / "config.yaml")
    assert_refused(exc, tmp_path / "base.yaml", marker)


@pytest.mark.parametrize("base", ["evil.py", "https://example.invalid/evil.yaml"])
def test_yacs_base_that_is_python_or_remote_is_refused(base: str, tmp_path: Path) -> None:
    marker = marker_of(tmp_path)
    (tmp_path / "evil.py").write_text(f"import os\nos.system('touch {marker}')\n")
    (tmp_path / "config.yaml").write_text(f"_BASE_: {base}\n" + YACS)
    with pytest.raises(UntrustedCodeError) as exc:
        safe_yaml.load_yaml_with_base(tmp_path / "config.yaml")
    assert base in str(exc.value)
    assert_refused(exc, tmp_path / "config.yaml", marker)


LAZY = """\
model:
  _target_: detectron2.modeling.GeneralizedRCNN
  pixel_mean: [103.53, 116.28, 123.675]
dataloader:
  test:
    mapper: {_target_: detectron2.data.DatasetMapper, is_train: false, image_format: BGR}
"""


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("evil: {_target_: subprocess.call, args: [touch, MARKER]}\n", "subprocess.call"),
        ("model2: {_target_: torch.hub.load, repo_or_dir: attacker/repo, model: x}\n", "torch.hub.load"),
        ("model3: {_target_: detectron2.config.LazyConfig.load, filename: evil.py}\n", "LazyConfig.load"),
        ("model4: {_target_: detectron2.utils.registry.locate, name: os.system}\n", "locate"),
        ("model5: {_target_: {_target_: detectron2.utils.registry.locate, name: subprocess.call}, args: [x]}\n", "[0]"),
        ("model6: {_target_: torch._C._jit_pass_x}\n", "torch._C"),
        ("model7: {_target_: '${evil._target_}'}\nevil: {_target_: subprocess.call}\n", "subprocess.call"),
    ],
)
def test_lazy_target_outside_the_namespaces_is_refused(extra: str, named: str, tmp_path: Path) -> None:
    pytest.importorskip("omegaconf")
    pytest.importorskip("detectron2")
    from safepredict.frameworks.detectron2.contract import load_config

    marker = marker_of(tmp_path)
    path = tmp_path / "lazy.yaml"
    path.write_text(LAZY + extra.replace("MARKER", str(marker)))
    with pytest.raises(UntrustedCodeError) as exc:
        load_config(path)
    if named != "[0]":
        assert named in str(exc.value)
    assert "_target_" in str(exc.value)
    assert_refused(exc, path, marker)


def test_lazy_target_check_names_the_key_path(tmp_path: Path) -> None:
    cfg = {"model": {"backbone": [{"_target_": "detectron2.modeling.ResNet"}, {"_target_": "subprocess.call"}]}}
    with pytest.raises(UntrustedCodeError) as exc:
        safe_yaml.check_lazy_targets(cfg, "lazy.yaml")
    assert exc.value.details == {"key": "model.backbone[1]._target_", "target": "subprocess.call"}
    safe_yaml.check_lazy_targets(cfg, "lazy.yaml", trust=True)  # trusted: not checked


def test_the_lazy_target_vector_is_live(tmp_path: Path) -> None:
    """Why the check exists: ``instantiate`` calls a ``_target_`` from any module."""
    pytest.importorskip("detectron2")
    from detectron2.config import instantiate
    from omegaconf import OmegaConf

    marker = marker_of(tmp_path)
    instantiate(OmegaConf.create({"_target_": "subprocess.call", "args": ["touch", str(marker)]}))
    assert marker.exists()


def test_lazy_yaml_with_a_python_tag_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    from safepredict.frameworks.detectron2.contract import load_config

    marker = marker_of(tmp_path)
    path = tmp_path / "lazy.yaml"
    path.write_text(LAZY + f"train: {{init: !!python/object/apply:os.system ['touch {marker}']}}\n")
    with pytest.raises(UntrustedCodeError):
        load_config(path)
    assert not marker.exists()
    from detectron2.config import LazyConfig

    LazyConfig.load(str(path))  # live: LazyConfig.load uses yaml.unsafe_load
    assert marker.exists()


def test_lazy_py_config_loads_only_when_trusted(tmp_path: Path, caplog: Any) -> None:
    pytest.importorskip("detectron2")
    from safepredict.frameworks.detectron2.contract import load_config

    marker = marker_of(tmp_path)
    path = tmp_path / "lazy.py"
    path.write_text(
        f"import os\nos.system('touch {marker}')\nmodel = dict(_target_='detectron2.modeling.GeneralizedRCNN')\n"
    )
    with pytest.raises(UntrustedCodeError) as exc:
        load_config(path)
    assert "LazyConfig .py" in str(exc.value)
    assert_refused(exc, path, marker)
    with caplog.at_level(logging.INFO, logger="safepredict"):
        cfg, _ = load_config(path, trust=True)
    assert marker.exists() and cfg.model._target_ == "detectron2.modeling.GeneralizedRCNN"
    assert "trusted: running Detectron2's own config loader (LazyConfig.load)" in caplog.text


# ------------------------------------------------------------------------------- legitimate configs


def _zoo() -> Path:
    pytest.importorskip("detectron2")
    import detectron2

    return Path(detectron2.__file__).parent / "model_zoo" / "configs"


def _merge(path: Path, safe: bool) -> Any:
    from detectron2.config import get_cfg

    cfg = get_cfg()
    try:
        if safe:
            safe_yaml.merge_from_file(cfg, path)
        else:
            cfg.merge_from_file(str(path))
    except KeyError:  # a project's keys: the set_new_allowed fallback of load_config
        cfg = get_cfg()
        cfg.set_new_allowed(True)
        if safe:
            safe_yaml.merge_from_file(cfg, path)
        else:
            cfg.merge_from_file(str(path))
    return cfg


def test_safe_merge_equals_merge_from_file_on_the_detectron2_zoo() -> None:
    """Every yacs config of the zoo merges to the same CfgNode as merge_from_file, the RetinaNet
    ones (whose Base-RetinaNet.yaml computes anchors with !!python/object/apply:eval) included."""
    root = _zoo()
    files = sorted(root.rglob("*.yaml"))
    assert len(files) > 80
    retinanet = 0
    for path in files:
        mine = _merge(path, safe=True)
        assert mine == _merge(path, safe=False), path
        retinanet += "apply:eval" in "".join(p.read_text() for p in (path, root / "Base-RetinaNet.yaml")
                                             if p.name.lower().startswith(("retinanet", "base-retinanet")))
    print(f"Detectron2 zoo: {len(files)} merged equal, {retinanet} of them RetinaNet (eval of anchor sizes)")
    assert retinanet >= 6


def test_safe_merge_equals_merge_from_file_with_project_keys_and_old_versions(tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    from safepredict.frameworks.detectron2.contract import load_config

    base = tmp_path / "base" / "Base-RCNN.yaml"
    base.parent.mkdir()
    base.write_text(
        "MODEL:\n  META_ARCHITECTURE: GeneralizedRCNN\n  MASK_ON: true\nINPUT:\n  MIN_SIZE_TRAIN: (640, 672)\n"
    )
    project = tmp_path / "project.yaml"  # relative _BASE_, a project key, no VERSION
    project.write_text(
        "_BASE_: base/Base-RCNN.yaml\nMODEL:\n  FCOS:\n    NUM_CLASSES: 4\n  RPN:\n    HEAD_NAME: StandardRPNHead\n"
    )
    old = tmp_path / "old.yaml"  # a v1 config: upgraded on merge
    old.write_text("VERSION: 1\nMODEL:\n  RPN_HEAD:\n    NAME: StandardRPNHead\n")
    for path in (project, old):
        assert _merge(path, safe=True) == _merge(path, safe=False), path
        safe, _ = load_config(path)
        trusted, _ = load_config(path, trust=True)
        assert safe == trusted
    assert load_config(project)[0].MODEL.FCOS.NUM_CLASSES == 4


def test_zoo_retinanet_anchors_computed_by_eval_read_untrusted_as_merge_from_file_computes_them() -> None:
    """Base-RetinaNet.yaml's !!python/object/apply:eval argument is evaluated as config data."""
    path = _zoo() / "COCO-Detection" / "retinanet_R_50_FPN_1x.yaml"
    assert "!!python/object/apply:eval" in (_zoo() / "Base-RetinaNet.yaml").read_text()
    sizes = safe_yaml.load_yaml_with_base(path)["MODEL"]["ANCHOR_GENERATOR"]["SIZES"]
    trusted = _merge(path, safe=False).MODEL.ANCHOR_GENERATOR.SIZES
    assert len(sizes) == 5 and [list(s) for s in trusted] == sizes  # the same floats, bit for bit
    from safepredict.frameworks.detectron2.contract import load_config

    assert load_config(path)[0] == _merge(path, safe=False)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('touch MARKER')",
        "[open('MARKER', 'w') for x in [1]]",
        "().__class__.__base__.__subclasses__()",
        "exec('import os')",
        "[x for x in [1]]; import os",
    ],
)
def test_eval_tag_with_code_is_refused(expression: str, tmp_path: Path) -> None:
    marker = marker_of(tmp_path)
    text = YACS + f"A: !!python/object/apply:eval [{expression.replace('MARKER', str(marker))!r}]\n"
    with pytest.raises(ConfigError) as exc:
        safe_yaml.safe_load(text, "config.yaml")
    assert "config.yaml" in str(exc.value) and not marker.exists()
    for form in (f"A: !!python/object/apply:eval {{args: [{expression!r}]}}\n", "A: !!python/object/apply:eval [1]\n"):
        with pytest.raises(UntrustedCodeError):
            safe_yaml.safe_load(YACS + form, "config.yaml")


def test_yacs_base_with_home_expansion(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "base.yaml").write_text("A: 1\nB: {C: 2}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cfg.yaml").write_text("_BASE_: ~/base.yaml\nB: {D: 3}\n")
    assert safe_yaml.load_yaml_with_base(tmp_path / "sub" / "cfg.yaml") == {"A": 1, "B": {"C": 2, "D": 3}}


@pytest.mark.parametrize(
    "name", ["new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py", "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py"]
)
def test_lazy_yaml_saved_by_lazyconfig_loads_as_lazyconfig_loads_it(name: str, tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    from detectron2 import model_zoo
    from detectron2.config import LazyConfig
    from detectron2.layers import ShapeSpec
    from omegaconf import OmegaConf

    from safepredict.frameworks.detectron2.contract import load_config

    cfg = model_zoo.get_config(name)  # our own trusted zoo: loading its .py is fine here
    if name.startswith("new_baselines"):
        # The LSJ config's conv_norm is a lambda, which LazyConfig.save writes as
        # !!python/name:None.<lambda>: neither loader can read that back (tested below).
        cfg.model.roi_heads.box_head.conv_norm = cfg.model.roi_heads.mask_head.conv_norm = "SyncBN"
    saved = tmp_path / "config.yaml"
    LazyConfig.save(cfg, str(saved))
    assert "!!python/object:detectron2.layers.shape_spec.ShapeSpec" in saved.read_text()
    ours, theirs = safe_yaml.lazy_load(saved), LazyConfig.load(str(saved))
    assert OmegaConf.to_container(ours, resolve=False) == OmegaConf.to_container(theirs, resolve=False)
    # OmegaConf holds a dataclass as a structured node; instantiate() turns it back into one.
    assert OmegaConf.get_type(ours.model.roi_heads.box_head.input_shape) is ShapeSpec
    safe_yaml.check_lazy_targets(ours, str(saved))
    loaded, _ = load_config(saved)
    assert OmegaConf.to_container(loaded, resolve=False) == OmegaConf.to_container(theirs, resolve=False)


def test_lazy_yaml_with_a_lambda_is_refused_as_lazyconfig_cannot_read_it_either(tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    from detectron2 import model_zoo
    from detectron2.config import LazyConfig

    saved = tmp_path / "config.yaml"
    LazyConfig.save(model_zoo.get_config("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py"), str(saved))
    with pytest.raises(UntrustedCodeError, match="!!python/name"):
        safe_yaml.lazy_load(saved)
    with pytest.raises(Exception, match="None"):
        LazyConfig.load(str(saved))


def test_every_zoo_lazyconfig_passes_the_target_check() -> None:
    """No false alarm: the targets of Detectron2's own LazyConfigs are allowed, but for the one
    config that defines its model class in the config file itself (code, trusted only)."""
    from detectron2.config import LazyConfig

    root = _zoo()
    files = sorted(p for p in root.rglob("*.py") if "common" not in p.parts)
    assert len(files) > 20
    refused = {}
    for path in files:
        try:
            safe_yaml.check_lazy_targets(LazyConfig.load(str(path)), str(path))
        except UntrustedCodeError as exc:
            refused[str(path.relative_to(root))] = exc.details["target"]
    assert refused == {"Misc/torchvision_imagenet_R_50.py": "builtins.ClassificationNet"}


def test_shape_spec_without_detectron2_is_a_dict_and_bad_fields_are_an_error() -> None:
    text = "s: !!python/object:detectron2.layers.shape_spec.ShapeSpec {channels: 3, stride: 4}\n"
    value = safe_yaml.safe_load(text)["s"]
    assert getattr(value, "channels", None) == 3 or value == {"channels": 3, "stride": 4}
    with pytest.raises(ConfigError, match="ShapeSpec"):
        safe_yaml.safe_load("s: !!python/object:detectron2.layers.shape_spec.ShapeSpec {run: 1}\n")
    assert safe_yaml.safe_load("t: !!python/tuple [1, 2]\n") == {"t": (1, 2)}


def test_yaml_bombs_and_recursion_end_in_config_errors() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        bomb += f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]\n"
    with pytest.raises(ConfigError, match="expands its aliases"):
        safe_yaml.safe_load(bomb)
    with pytest.raises(ConfigError, match="recursive"):
        safe_yaml.safe_load("a: &a [*a]\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        safe_yaml.safe_load("[" * 20000)
