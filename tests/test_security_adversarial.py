"""Hostile in structure, not random: every attack class of issue 21 ends typed, in time, in memory, running nothing.

Each artifact below is a few lines that, read naively, run code (a name that walks from an
allowed package to ``os.system``), run for hours, or take gigabytes: sharing that doubles per
level, hashing of shared tuples, comprehensions whose filter drops everything, ``set()`` of a
long list, substitutions that make regexes quadratic, ``_base_`` fan-out and DAGs, widths hidden
in ``%``-format mapping keys, reprs of huge values in error messages, ``/dev/zero`` and FIFOs as
bases, deep YAML, base-60 integers, LazyConfig interpolations that double. Each goes through the
public entry points (``load_config`` of both frameworks, ``discover``, ``SafePredictor.
from_checkpoint`` / ``from_mmdet``) and must end in a :class:`SafePredictError` within the
deadline, with the test process under the memory ceiling and the marker file absent.
tests/test_security_generated.py runs the structure-aware generator over the same classes.
"""

from __future__ import annotations

import functools
import os
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from safepredict.errors import ConfigError, SafePredictError, UntrustedCodeError
from safepredict.frameworks import guard, safe_config, safe_yaml

pytestmark = pytest.mark.slow

DEADLINE_S = 15.0  # the guard's wall limit below is 10 s; a hang would be hours
CEILING_MB = 512  # the guard's memory ceiling below, and the most the test process may grow


@pytest.fixture(scope="module", autouse=True)
def _warm_imports() -> None:
    """First imports of the frameworks take seconds on a cold machine: not part of any read's time."""
    for name in (
        "safepredict.predictor",
        "safepredict.frameworks.artifact",
        "safepredict.frameworks.detectron2.contract",
        "safepredict.frameworks.mmdet.contract",
        "detectron2.config",
        "detectron2.modeling",
        "detectron2.data",
        "mmengine.config",
        "omegaconf",
    ):
        try:
            __import__(name)
        except ImportError:
            pass
    guard.run(dict, source="warm-up")


@pytest.fixture(autouse=True)
def _tight_guard() -> Iterator[None]:
    with guard.limited(memory_mb=CEILING_MB, cpu_s=8, wall_s=10):
        yield


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ends_typed(call: Callable[[], Any], marker: Path | None = None) -> SafePredictError:
    """``call()`` must raise a SafePredictError within the deadline, the process under the ceiling."""
    before = _rss_mb()
    started = time.monotonic()
    try:
        call()
    except SafePredictError as exc:
        error = exc
    else:
        raise AssertionError("read without an error")
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE_S, f"{elapsed:.1f} s: {error}"
    assert _rss_mb() - before < CEILING_MB, f"peak RSS grew {_rss_mb() - before:.0f} MB"
    if marker is not None:
        assert not marker.exists(), "the payload ran"
    return error


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ------------------------------------------------------------------------------- entry points


def _d2_checkpoint(path: Path) -> Path:
    import torch

    torch.save({"model": {"backbone.bottom_up.stem.conv1.weight": torch.zeros(1)}, "iteration": 10}, str(path))
    return path


def _mm_checkpoint(path: Path, text: str) -> Path:
    import torch

    state = {"backbone.conv1.weight": torch.zeros(2, 3, 1, 1), "roi_head.bbox_head.fc_cls.bias": torch.zeros(3)}
    torch.save({"state_dict": state, "meta": {"cfg": text, "epoch": 1}}, str(path))
    return path


def d2_entry_points(config: Path) -> dict[str, Callable[[], Any]]:
    """Every public way a Detectron2 config beside a checkpoint is read untrusted."""
    from safepredict import SafePredictor
    from safepredict.frameworks.artifact import discover
    from safepredict.frameworks.detectron2.contract import load_config

    beside = config.parent / "config.yaml"
    if config != beside:
        beside.write_bytes(config.read_bytes())
    weights = _d2_checkpoint(config.parent / "model_final.pth")
    return {
        "load_config": lambda: load_config(config),
        "discover": lambda: discover(weights),
        "from_checkpoint": lambda: SafePredictor.from_checkpoint(weights),
    }


_BENIGN: list[str] = []


def _benign_text() -> str:
    """A whole training config as mmengine dumps it (mmdet's own Faster R-CNN, read trusted)."""
    if not _BENIGN:
        import mmdet
        from mmengine.config import Config

        zoo = Path(mmdet.__file__).parent / ".mim" / "configs" / "faster_rcnn" / "faster-rcnn_r50_fpn_1x_coco.py"
        _BENIGN.append(Config.fromfile(str(zoo)).pretty_text)
    return _BENIGN[0]


def mm_entry_points(config: Path) -> dict[str, Callable[[], Any]]:
    """Every public way an mmengine config is read untrusted: the file, and its text in a checkpoint."""
    from safepredict import SafePredictor
    from safepredict.frameworks.artifact import discover
    from safepredict.frameworks.mmdet.contract import load_config

    # from_mmdet reads the training config from the checkpoint, then the hostile file as the inference config.
    benign = _mm_checkpoint(config.parent / "benign.pth", _benign_text())
    points: dict[str, Callable[[], Any]] = {
        "load_config": lambda: load_config(config),
        "from_mmdet": lambda: SafePredictor.from_mmdet(config, benign),
    }
    text = config.read_text(errors="replace")
    if "_base_" not in text and "{{" not in text:  # a checkpoint's text has no files around it
        hostile = _mm_checkpoint(config.parent / "epoch_1.pth", text)
        points["discover"] = lambda: discover(hostile)
        points["from_checkpoint"] = lambda: SafePredictor.from_checkpoint(hostile)
    return points


# ------------------------------------------------------------------------------- 1. code runs

WALKS = [
    "torch.os.system",
    "torch.builtins.eval",
    "torch.sys.modules",
    "torch.nn.modules.module.torch.os.system",
    "torchvision.os.system",
    "detectron2.utils.registry.pydoc.locate",
    "fvcore.common.config.yaml.unsafe_load",
]


def test_the_attribute_walk_is_live() -> None:
    """Why names resolve by import: Detectron2's locate walks from torch to os.system."""
    pytest.importorskip("detectron2")
    from detectron2.utils.registry import locate

    assert locate("torch.os.system") is os.system
    assert locate("torch.nn.modules.module.torch.os.system") is os.system


@pytest.mark.parametrize("target", WALKS)
def test_lazy_target_that_walks_out_of_the_namespace_is_refused(target: str, tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    marker = tmp_path / "PWNED"
    config = tmp_path / "lazy.yaml"
    config.write_text(
        f"model:\n  _target_: {target}\n  _args_: ['touch {marker}']\n"
        "dataloader:\n  test:\n    mapper: {_target_: detectron2.data.DatasetMapper}\n"
    )
    for name, read in d2_entry_points(config).items():
        error = ends_typed(read, marker)
        assert isinstance(error, UntrustedCodeError), (name, error)
        assert target in str(error) and "_target_" in str(error), (name, error)


def test_lazy_target_that_is_an_interpolation_of_a_walk_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    marker = tmp_path / "PWNED"
    config = tmp_path / "lazy.yaml"
    config.write_text(f"x: torch.os\nmodel: {{_target_: '${{x}}.system', _args_: ['touch {marker}']}}\n")
    from safepredict.frameworks.detectron2.contract import load_config

    error = ends_typed(lambda: load_config(config), marker)
    assert isinstance(error, UntrustedCodeError) and "torch.os.system" in str(error)


MM_FALLBACKS = ["mmengine.HTTPBackend", "mmengine.PickleHandler", "mmengine.Config", "mmengine.FileClient"]


def test_the_registry_fallback_is_live() -> None:
    """Why types resolve by import: get_object_from_string walks mmengine's top level."""
    pytest.importorskip("mmengine")
    from mmengine.utils import get_object_from_string

    assert get_object_from_string("mmengine.HTTPBackend").__module__.startswith("mmengine.fileio")


@pytest.mark.parametrize("name", MM_FALLBACKS)
def test_mmengine_type_that_the_fallback_would_reach_is_refused(name: str, tmp_path: Path) -> None:
    pytest.importorskip("mmengine")
    config = tmp_path / "cfg.py"
    config.write_text(f"model = dict(type='FasterRCNN', backbone=dict(type={name!r}))\n")
    for entry, read in mm_entry_points(config).items():
        error = ends_typed(read)
        assert isinstance(error, UntrustedCodeError), (entry, error)
        assert name in str(error) and "get_object_from_string" in str(error), (entry, error)


def test_registered_and_scoped_types_still_read(tmp_path: Path) -> None:
    pytest.importorskip("mmengine")
    config = tmp_path / "cfg.py"
    config.write_text(
        "model = dict(type='FasterRCNN', backbone=dict(type='mmpretrain.ConvNeXt'), x=dict(type='mmdet.ResNet'))\n"
    )
    safe_config.check_mmengine_types(safe_config.evaluate_file(config), str(config))


# ------------------------------------------------------------------------------- 2. hangs and memory

MM_HOSTILE: dict[str, dict[str, str]] = {
    "values that share children": {
        "cfg.py": "a0 = [1]\n" + "".join(f"a{i + 1} = [a{i}, a{i}]\n" for i in range(40)) + "model = dict(x=a40)\n"
    },
    "sharing copied by a ConfigDict": {
        "cfg.py": "_base_ = './b.py'\na0 = [1]\n"
        + "".join(f"a{i + 1} = [a{i}, a{i}]\n" for i in range(40))
        + "_base_.model.x = a40\n",
        "b.py": "model = dict(type='FasterRCNN')\n",
    },
    "hashing of nested tuples": {
        "cfg.py": "a0 = (1,)\n" + "".join(f"a{i + 1} = (a{i}, a{i})\n" for i in range(40)) + "d = {a40: 1}\n"
    },
    "a set of nested tuples": {
        "cfg.py": "a0 = (1,)\n" + "".join(f"a{i + 1} = (a{i}, a{i})\n" for i in range(40)) + "d = set([a40])\n"
    },
    "iterations a filter drops": {"cfg.py": "x = [i for i in range(1000000) for j in range(1000000) if 0]\n"},
    "set() charged by its result": {"cfg.py": "x = [1] * 1000000\n" + "y = set(x)\n" * 200},
    "dict.update charged by its result": {
        "cfg.py": "d = {}\nv = dict(zip(range(300000), [0] * 300000))\n" + "d.update(v)\n" * 100
    },
    "string building": {"cfg.py": "s = 'x' * 1000000\n" + "t = s + s[:-1]\n" * 300},
    "deletions from a long list": {"cfg.py": "x = [0] * 1000000\n" + "del x[0:1]\n" * 90_000},
    "arithmetic on wide integers": {
        "cfg.py": "x = 3 ** 20000\ny = 3 ** 10000 + 1\nz = [x % y for i in range(10 ** 6)]\n"
    },
    "a %-format width behind a nested mapping key": {"cfg.py": "x = '%((a)b)999999999s' % {'(a)b': 'x'}\n"},
    "a %-format width after flags and a key": {"cfg.py": "x = b'%(k)-0999999999d' % {b'k': 1}\n"},
    "an f-string width computed": {"cfg.py": "w = '9' * 12\nx = f'{1:>{w}}'\n"},
    "a repr of an exponential value in an error": {
        "cfg.py": "a0 = (1,)\n" + "".join(f"a{i + 1} = (a{i}, a{i})\n" for i in range(40)) + "d = {}\nx = d[a40]\n"
    },
    "an 8 MB source": {"cfg.py": "x = [" + "1," * 4_000_000 + "]\n"},
    "an unclosed {{$A: repeated": {"cfg.py": "x = 1\n# " + "{{$A:" * 190_000 + "\n"},
    "many {{$ENV}} substitutions": {"cfg.py": "x = '" + "{{$SAFEPREDICT_NOPE:a}}" * 40_000 + "'\n"},
    "many {{_base_.x}} substitutions": {
        "cfg.py": "_base_ = './b.py'\ny = [" + "{{_base_.x}}," * 50_000 + "]\n",
        "b.py": "x = [0] * 100\n",
    },
    "a {{_base_.x}} of a big value used often": {
        "cfg.py": "_base_ = './b.py'\ny = [" + "{{_base_.x}}," * 900 + "]\n",
        "b.py": "x = [[0] * 100] * 1000\n",
    },
    "one base a million times": {"cfg.py": "_base_ = ['./b.py'] * 1000000\n", "b.py": "\n"},
    "one base listed 300 times": {"cfg.py": "_base_ = ['./b.py'] * 300\n", "b.py": "\n"},
    "a DAG of bases 30 levels deep": {
        **{f"l{i}.py": f"_base_ = ['./l{i + 1}.py', './l{i + 1}.py']\n" for i in range(30)},
        "l30.py": "\n",
        "cfg.py": "_base_ = './l0.py'\n",
    },
    "the text of bases piling up": {
        "cfg.py": "_base_ = ['./big.py'] * 40\n",
        "big.py": "# " + "x" * 900_000 + "\n",
    },
    "a base that is /dev/zero": {"cfg.py": "_base_ = '/dev/zero.py'\n"},
    "a YAML base with base-60 integers": {
        "cfg.py": "_base_ = './b.yaml'\n",
        "b.yaml": "x: 1" + ":59" * 100_000 + "\n",
    },
    "a deep YAML base": {"cfg.py": "_base_ = './b.yaml'\n", "b.yaml": "x: " + "[" * 50_000 + "]" * 50_000 + "\n"},
}


@pytest.mark.parametrize("kind", list(MM_HOSTILE))
def test_mmengine_hostile_structure_ends_typed(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("mmengine")
    files = MM_HOSTILE[kind]
    if kind == "a base that is /dev/zero":
        os.symlink("/dev/zero", tmp_path / "zero.py")
        files = {"cfg.py": "_base_ = './zero.py'\n"}
    write(tmp_path, files)
    config = tmp_path / "cfg.py"
    points = mm_entry_points(config)
    # load_config for every case, and one of the others in turn (each is tested on every case class
    # it can read: the checkpoint ones on text without files around it).
    others = sorted(set(points) - {"load_config"})
    chosen = ["load_config", others[list(MM_HOSTILE).index(kind) % len(others)]]
    for entry, read in ((e, points[e]) for e in chosen):
        error = ends_typed(read)
        assert isinstance(error, ConfigError), (entry, error)
        # The hostile file (or a base of it, or the checkpoint holding its text) is named, not the benign one.
        assert str(tmp_path) in str(error) and "benign.pth" not in str(error), (entry, error)


def test_the_evaluators_limits_hold_without_the_guard(tmp_path: Path) -> None:
    """The accounting alone (the read in this process, as where fork is missing) ends every case."""
    for kind, files in MM_HOSTILE.items():
        if "dev/zero" in kind:
            continue
        root = tmp_path / str(abs(hash(kind)))
        write(root, files)
        ends_typed(functools.partial(safe_config._read_here, str(root / "cfg.py")))


D2_HOSTILE: dict[str, dict[str, str]] = {
    "a _BASE_ that is /dev/zero": {"config.yaml": "_BASE_: /dev/zero\nMODEL: {META_ARCHITECTURE: GeneralizedRCNN}\n"},
    "_BASE_ fan-out": {"config.yaml": "_BASE_: [" + "b.yaml, " * 20_000 + "]\n", "b.yaml": "{}\n"},
    "a _BASE_ DAG": {
        **{f"l{i}.yaml": f"_BASE_: [l{i + 1}.yaml, l{i + 1}.yaml]\n" for i in range(30)},
        "l30.yaml": "MODEL: {META_ARCHITECTURE: GeneralizedRCNN}\n",
        "config.yaml": "_BASE_: l0.yaml\n",
    },
    "the text of bases piling up": {
        "config.yaml": "_BASE_: [" + "big.yaml, " * 40 + "]\n",
        "big.yaml": "# " + "x" * 1_900_000 + "\nMODEL: {}\n",
    },
    "base-60 integers": {"config.yaml": "SEED: 1" + ":59" * 200_000 + "\n"},
    "deep flow nesting": {"config.yaml": "MODEL: " + "[" * 100_000 + "]" * 100_000 + "\n"},
    "deep block nesting": {"config.yaml": "MODEL:\n" + "".join("  " * i + "- \n" for i in range(1, 3000))},
    "deep nesting merged through _BASE_": {
        "config.yaml": "_BASE_: b.yaml\nA:" + "".join(f"\n{'  ' * i}a:" for i in range(1, 150)) + " 1\n",
        "b.yaml": "A:" + "".join(f"\n{'  ' * i}a:" for i in range(1, 150)) + " 2\n",
    },
    "a string yacs decodes into deep brackets": {"config.yaml": "SEED: '" + "(" * 100_000 + "'\n"},
    "a string yacs decodes into deep unary operators": {"config.yaml": "SEED: '" + "-" * 100_000 + "1'\n"},
    "a string yacs decodes into a huge number": {"config.yaml": "SEED: '" + "9" * 1_000_000 + "'\n"},
    "an alias bomb": {
        "config.yaml": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
    },
    "an eval tag with code": {
        "config.yaml": "A: !!python/object/apply:eval [\"__import__('os').system('touch MARKER')\"]\n"
    },
    "an eval tag that is a bomb": {
        "config.yaml": 'A: !!python/object/apply:eval ["[[0] * 1000000 for x in range(10 ** 6)]"]\n'
    },
}


@pytest.mark.parametrize("kind", list(D2_HOSTILE))
def test_yacs_hostile_structure_ends_typed(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    marker = tmp_path / "PWNED"
    write(tmp_path, {k: v.replace("MARKER", str(marker)) for k, v in D2_HOSTILE[kind].items()})
    for entry, read in d2_entry_points(tmp_path / "config.yaml").items():
        error = ends_typed(read, marker)
        assert isinstance(error, ConfigError), (entry, error)


def test_a_fifo_as_base_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    pytest.importorskip("detectron2")
    os.mkfifo(tmp_path / "fifo.yaml")
    os.mkfifo(tmp_path / "fifo.py")
    write(tmp_path, {"config.yaml": "_BASE_: fifo.yaml\n", "cfg.py": "_base_ = './fifo.py'\n"})
    for read in d2_entry_points(tmp_path / "config.yaml").values():
        assert "regular file" in str(ends_typed(read))
    for read in mm_entry_points(tmp_path / "cfg.py").values():
        assert "regular file" in str(ends_typed(read))


def test_a_sparse_4_gb_config_is_refused_unread(tmp_path: Path) -> None:
    """Every look at a config file checks its size first (telling the framework, telling yacs from LazyConfig)."""
    pytest.importorskip("detectron2")
    from safepredict.frameworks.artifact import read_contract

    config = tmp_path / "config.yaml"
    with open(config, "wb") as handle:
        handle.truncate(4 << 30)  # sparse: no disk, no time to write
    for read in [*d2_entry_points(config).values(), lambda: read_contract(config)]:
        assert "bytes, more than safepredict reads" in str(ends_typed(read))


def test_lazyconfig_interpolations_that_double_end_typed(tmp_path: Path) -> None:
    """Resolving a40 takes 2**40 steps, whatever memory it holds: the guard's CPU limit ends it."""
    pytest.importorskip("detectron2")
    text = "a0: xxxxxxxx\n" + "".join(f"a{i + 1}: ${{a{i}}}${{a{i}}}\n" for i in range(40))
    text += "model: {_target_: detectron2.modeling.GeneralizedRCNN, x: '${a40}'}\n"
    config = tmp_path / "lazy.yaml"
    config.write_text(text)
    with guard.limited(cpu_s=1, wall_s=3):
        for entry, read in d2_entry_points(config).items():
            error = ends_typed(read)
            assert isinstance(error, ConfigError), (entry, error)


def test_deep_yacs_that_the_frameworks_could_write_still_merges(tmp_path: Path) -> None:
    """90 levels (the limit is 100): merged by yacs's recursion without a RecursionError."""
    pytest.importorskip("detectron2")
    from safepredict.frameworks.detectron2.contract import load_config

    nested = "".join(f"\n{'  ' * i}a:" for i in range(1, 90))
    write(tmp_path, {"config.yaml": f"_BASE_: b.yaml\nA:{nested} 1\n", "b.yaml": f"A:{nested} 2\n"})
    cfg, _ = load_config(tmp_path / "config.yaml")
    node = cfg.A
    for _ in range(88):
        node = node.a
    assert node.a == 1


# ------------------------------------------------------------------------------- 3. untyped ends


def test_a_main_base_is_a_config_error(tmp_path: Path) -> None:
    """find_spec('__main__') raises ValueError where __main__ has no spec (pytest, a REPL)."""
    pytest.importorskip("mmengine")
    write(tmp_path, {"cfg.py": "_base_ = '__main__::x/y.py'\n"})
    for read in mm_entry_points(tmp_path / "cfg.py").values():
        ends_typed(read)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 20_000,
        "- " * 20_000 + "x\n",
        "".join("  " * i + "a:\n" for i in range(1_000)),
        "{a: " * 20_000 + "1" + "}" * 20_000,
        "? " * 20_000 + "x\n",
    ],
    ids=["flow sequence", "block sequence", "block mapping", "flow mapping", "complex keys"],
)
def test_deep_yaml_is_refused_before_the_parser_composes_it(text: str) -> None:
    error = ends_typed(lambda: safe_yaml.safe_load(text, "deep.yaml"))
    assert "nested too deeply" in str(error)


def test_the_guard_turns_any_end_of_the_reader_into_a_config_error_naming_the_file_and_the_limit() -> None:
    """What the accounting might miss: memory, CPU, wall time, a crash, an untyped exception."""
    import ctypes

    def memory() -> Any:
        return b"x" * (2 * CEILING_MB << 20)

    def cpu() -> Any:
        while True:
            pass

    def crash() -> Any:
        return ctypes.string_at(0)

    def untyped() -> Any:
        raise ValueError("x" * 10_000)

    def nested() -> Any:
        def deeper(n: int) -> int:
            return deeper(n + 1)

        return deeper(0)

    # A wall limit far above the CPU limit: on a loaded machine 1 s of CPU can take several seconds.
    with guard.limited(cpu_s=1, wall_s=DEADLINE_S - 3):
        for fn, limit in ((memory, "memory"), (cpu, "cpu"), (crash, "crash"), (untyped, None), (nested, "recursion")):
            error = ends_typed(functools.partial(guard.run, fn, source="hostile.yaml"))
            assert isinstance(error, ConfigError) and "hostile.yaml" in str(error), error
            if limit is not None:
                assert error.details["limit"] == limit, error
                assert "MiB" in str(error), error
    with guard.limited(cpu_s=30, wall_s=1):
        error = ends_typed(lambda: guard.run(time.sleep, 30, source="slow.yaml"))
        assert error.details["limit"] == "wall"


def test_the_guard_returns_plain_data_and_the_readers_errors_as_raised() -> None:
    value = {"a": [1, 2.5, (3, None)], "s": {1}, "f": frozenset({2}), "c": 1j, "e": ..., "b": b"x"}
    assert guard.run(lambda: value, source="x") == value

    def refuse() -> Any:
        raise UntrustedCodeError("no", source="x.yaml", details={"line": 3})

    error = ends_typed(lambda: guard.run(refuse, source="x.yaml"))
    assert type(error) is UntrustedCodeError and error.details == {"line": 3}
    error = ends_typed(lambda: guard.run(lambda: object(), source="x.yaml"))
    assert "not plain data" in str(error) or "could not be read" in str(error)
