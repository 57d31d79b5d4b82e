"""Fuzz the readers of untrusted files: each ends in a value or a typed SafePredictError.

The safe mmengine-config evaluator (random text, and source built from a grammar of allowed and
disallowed constructs), the safe YAML reader, the lock reader and the reference-profile reader
read what a stranger hands over. None may raise another exception, run code (a payload in the
grammar writes a marker file) or hang (hypothesis' deadline). 11,800 cases in all (and the
profile cases up to the first untyped error); derandomized,
so a run is the same everywhere.
"""

from __future__ import annotations

import json
import math
import string
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the importorskip
from hypothesis import strategies as st  # noqa: E402

from safepredict.errors import SafePredictError  # noqa: E402
from safepredict.frameworks import safe_config, safe_yaml  # noqa: E402

pytestmark = pytest.mark.slow

MARKER = Path(__file__).resolve().parent.parent / ".fuzz-payload-ran"
PAYLOAD = f"__import__('pathlib').Path({str(MARKER)!r}).write_text('x')"


def fuzz(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=2000,  # ms: the 2-core CI machine is shared; a hang would be far longer
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module", autouse=True)
def _warm_imports() -> None:
    """First imports (detectron2 for ShapeSpec, omegaconf, tomli_w) take seconds: not a hang."""
    safe_yaml.safe_load("s: !!python/object:detectron2.layers.shape_spec.ShapeSpec {}\n")
    for name in ("omegaconf", "tomli_w"):
        try:
            __import__(name)
        except ImportError:
            pass


@pytest.fixture(autouse=True)
def _no_payload() -> Any:
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a fuzzed input ran code"


def ends_typed(read: Any, *args: Any) -> Any:
    try:
        return read(*args)
    except SafePredictError:
        return None


# ------------------------------------------------------------------------------- mmengine config

_NAMES = st.sampled_from(["a", "b", "model", "_base_", "dict", "x", "__builtins__", "range", "len", "open"])
_ATOMS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=6).map(repr),
    st.binary(max_size=4).map(repr),
    st.sampled_from(["None", "True", "False", "...", "1j", "'%s-%d'", "'%*d'", "'{x}'", "1e308", "10**9"]),
    _NAMES,
)
_BINOPS = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "|", "&", "^", "@"])


def _extend(children: Any) -> Any:
    items = st.lists(children, max_size=4)
    pairs = st.lists(st.tuples(children, children), max_size=3)
    return st.one_of(
        # allowed
        items.map(lambda xs: "[" + ", ".join(xs) + "]"),
        items.map(lambda xs: "(" + "".join(x + ", " for x in xs) + ")"),
        items.filter(bool).map(lambda xs: "{" + ", ".join(xs) + "}"),
        pairs.map(lambda ps: "{" + ", ".join(f"{k}: {v}" for k, v in ps) + "}"),
        st.lists(st.tuples(st.sampled_from(["type", "a", "b", "_delete_"]), children), max_size=3).map(
            lambda kws: "dict(" + ", ".join(f"{k}={v}" for k, v in kws) + ")"
        ),
        st.tuples(children, children).map(lambda t: f"dict({t[0]}, **{t[1]})"),
        st.tuples(children, children).map(lambda t: f"{{**{t[0]}, 'k': {t[1]}}}"),
        st.tuples(children, children).map(lambda t: f"[*{t[0]}, {t[1]}]"),
        st.tuples(children, _BINOPS, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "~", "not "]), children).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(children, children, children).map(lambda t: f"{t[0]}[{t[1]}:{t[2]}]"),
        st.tuples(children, st.sampled_from(["model", "backbone", "x", "__class__", "update", "mro"])).map(
            lambda t: f"{t[0]}.{t[1]}"
        ),
        st.tuples(children, st.sampled_from(["", ":>5", ":05d", "!r", ":>{10**9}", ":.2f"])).map(
            lambda t: 'f"{' + t[0].replace('"', "'") + t[1] + '}"'
        ),
        st.sampled_from(["list", "tuple", "set"]).flatmap(lambda f: children.map(lambda c: f"{f}({c})")),
        # outside the language
        st.tuples(st.sampled_from(["__import__", "range", "len", "getattr", "eval", "exec", "print"]), items).map(
            lambda t: f"{t[0]}(" + ", ".join(t[1]) + ")"
        ),
        children.map(lambda c: f"[{c} for x in [1, 2]]"),
        children.map(lambda c: f"{{{c}: 1 for x in 'ab'}}"),
        children.map(lambda c: f"(lambda: {c})()"),
        st.tuples(children, children).map(lambda t: f"({t[0]} if {t[1]} else 0)"),
        st.tuples(children, children).map(lambda t: f"({t[0]} == {t[1]})"),
        st.tuples(children, children).map(lambda t: f"({t[0]} and {t[1]})"),
        children.map(lambda c: f"(y := {c})"),
        st.just(PAYLOAD),
        st.just("().__class__.__base__.__subclasses__()"),
    )


_EXPRS = st.recursive(_ATOMS, _extend, max_leaves=10)
_TARGETS = st.one_of(
    _NAMES,
    st.sampled_from(["_base_.model", "_base_.model.backbone", "a[0]", "a['k']", "model.x", "a, b", "a[1:2]"]),
)
_STATEMENTS = st.one_of(
    st.tuples(_TARGETS, _EXPRS).map(lambda t: f"{t[0]} = {t[1]}"),
    st.tuples(_TARGETS, _BINOPS, _EXPRS).map(lambda t: f"{t[0]} {t[1]}= {t[2]}"),
    _TARGETS.map(lambda t: f"del {t}"),
    _EXPRS,
    st.sampled_from(
        [
            "import os",
            "from os import system",
            "from mmengine.config import read_base\nwith read_base():\n    from .base import *",
            "_base_ = './base.py'",
            "_base_ = ['a.py', 'b.py']",
            "custom_imports = dict(imports=['os'], allow_failed_imports=False)",
            "default_scope = 'os'",
            "model = dict(type='subprocess.call', args=['true'])",
            f"if 1:\n    x = {PAYLOAD}",
            f"def f():\n    {PAYLOAD}\nf()",
            f"x: {PAYLOAD} = 1",
            f"for i in [1]:\n    {PAYLOAD}",
            "class A: pass",
            "pass",
            "x = '{{_base_.model}}'",
            "y = {{_base_.model.backbone}}",
            "z = '{{ fileDirname }}'",
            "w = '{{$HOME:x}}'",
            "a = [1]\na[0] = a",
        ]
    ),
)
_PROGRAMS = st.lists(_STATEMENTS, min_size=1, max_size=6).map("\n".join)


def _read_text(text: str) -> Any:
    cfg = safe_config.evaluate_text(text, "checkpoint fuzz.pth: meta.cfg")
    assert isinstance(cfg, dict)
    safe_config.check_mmengine_types(cfg, "fuzz")
    return cfg


@fuzz(4000)
@given(_PROGRAMS)
def test_fuzz_mmengine_config_grammar(source: str) -> None:
    ends_typed(_read_text, source)


@fuzz(1500)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_fuzz_mmengine_config_text(text: str) -> None:
    ends_typed(_read_text, text)


@fuzz(300)
@given(child=_PROGRAMS, base=_PROGRAMS)
def test_fuzz_mmengine_config_files_with_bases(child: str, base: str, tmp_path_factory: Any) -> None:
    root = tmp_path_factory.mktemp("cfg")
    (root / "base.py").write_text(base)
    (root / "a.py").write_text("a = 1\n")
    (root / "b.py").write_text(base)
    (root / "cfg.py").write_text("_base_ = './base.py'\n" + child)
    value = ends_typed(safe_config.evaluate_file, root / "cfg.py")
    assert value is None or isinstance(value, dict)


# ------------------------------------------------------------------------------- YAML

_YAML_SCALARS = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.text(alphabet=string.ascii_letters + string.digits + " _-.:", max_size=8),
    st.text(max_size=6).map(json.dumps),
    st.sampled_from(["null", "~", "true", "no", "0x1F", "1_000", "2001-12-14", "1:20", ".inf", "*a", "''"]),
)
_YAML_TAGS = st.sampled_from(
    [
        "",
        "",
        "",
        "!!python/tuple ",
        "!!python/object/apply:os.system ",
        "!!python/object/new:subprocess.Popen ",
        "!!python/name:os.system ",
        "!!python/module:os ",
        "!!python/object:detectron2.layers.shape_spec.ShapeSpec ",
        "!!python/str ",
        "!!python/int ",
        "!!python/bool ",
        "!!python/none ",
        "!!set ",
        "!!binary ",
        "!!omap ",
        "!!timestamp ",
        "!custom ",
        "&a ",
        "&b ",
        "!<tag:yaml.org,2002:python/object/apply:os.system> ",
    ]
)


def _yaml_extend(children: Any) -> Any:
    return st.one_of(
        st.tuples(_YAML_TAGS, st.lists(children, max_size=4)).map(lambda t: t[0] + "[" + ", ".join(t[1]) + "]"),
        st.tuples(_YAML_TAGS, st.lists(st.tuples(_YAML_SCALARS, children), max_size=4)).map(
            lambda t: t[0] + "{" + ", ".join(f"{k}: {v}" for k, v in t[1]) + "}"
        ),
        st.tuples(_YAML_TAGS, children).map(lambda t: t[0] + t[1]),
    )


_YAML_DOCS = st.one_of(
    st.recursive(_YAML_SCALARS, _yaml_extend, max_leaves=12),
    st.recursive(_YAML_SCALARS, _yaml_extend, max_leaves=8).map(lambda d: f"_BASE_: base.yaml\nMODEL: {d}\n"),
)


@fuzz(2000)
@given(_YAML_DOCS)
def test_fuzz_yaml_grammar(text: str) -> None:
    ends_typed(safe_yaml.safe_load, text, "fuzz.yaml")


@fuzz(1000)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_fuzz_yaml_text(text: Any) -> None:
    ends_typed(safe_yaml.safe_load, text, "fuzz.yaml")


@fuzz(300)
@given(child=_YAML_DOCS, base=_YAML_DOCS)
def test_fuzz_yacs_files_with_bases(child: str, base: str, tmp_path_factory: Any) -> None:
    root = tmp_path_factory.mktemp("yacs")
    (root / "base.yaml").write_text(base)
    (root / "config.yaml").write_text(child if child.startswith("_BASE_") else f"_BASE_: base.yaml\nA: {child}\n")
    value = ends_typed(safe_yaml.load_yaml_with_base, root / "config.yaml")
    assert value is None or isinstance(value, dict)


@fuzz(500)
@given(st.recursive(_YAML_SCALARS, _yaml_extend, max_leaves=10))
def test_fuzz_lazy_target_check(text: str) -> None:
    pytest.importorskip("omegaconf")
    from omegaconf import OmegaConf

    data = ends_typed(safe_yaml.safe_load, f"model: {{_target_: detectron2.modeling.X, a: {text}}}", "fuzz.yaml")
    if isinstance(data, dict):
        try:
            cfg = OmegaConf.create(data, flags={"allow_objects": True})
        except Exception:  # noqa: BLE001 - what omegaconf refuses never reaches the check
            return
        ends_typed(safe_yaml.check_lazy_targets, cfg, "fuzz.yaml")


# ------------------------------------------------------------------------------- the lock

_TOML_VALUES = st.recursive(
    st.one_of(
        st.text(max_size=8),
        st.integers(-(2**63), 2**63 - 1),
        st.booleans(),
        st.floats(allow_nan=False),
        st.sampled_from(["exact", "record", "minor", "0" * 64, "x" * 64]),
    ),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)),
    max_leaves=8,
)
_LOCK_KEYS = st.sampled_from(["packages", "facts", "files", "inventory", "created", "safepredict_version", "x"])
_LOCK_TABLES = {
    "packages": st.dictionaries(
        st.text(max_size=6),
        st.one_of(
            st.fixed_dictionaries(
                {"version": _TOML_VALUES, "rule": _TOML_VALUES, "origin": _TOML_VALUES},
                optional={"distribution": _TOML_VALUES, "absent": _TOML_VALUES},
            ),
            _TOML_VALUES,
        ),
        max_size=3,
    ),
    "facts": st.dictionaries(
        st.text(max_size=6),
        st.one_of(
            st.fixed_dictionaries({"value": _TOML_VALUES, "rule": _TOML_VALUES}, optional={"source": _TOML_VALUES}),
            _TOML_VALUES,
        ),
        max_size=3,
    ),
    "files": st.dictionaries(
        st.text(max_size=6),
        st.fixed_dictionaries(
            {"path": _TOML_VALUES, "sha256": _TOML_VALUES, "size": _TOML_VALUES, "rule": _TOML_VALUES}
        ),
        max_size=2,
    ),
    "inventory": st.fixed_dictionaries(
        {},
        optional={
            "pip": st.dictionaries(st.text(max_size=6), _TOML_VALUES, max_size=3),
            "conda": st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": _TOML_VALUES, "version": _TOML_VALUES, "build": _TOML_VALUES},
                        optional={"build_number": _TOML_VALUES, "depends": _TOML_VALUES, "url": _TOML_VALUES},
                    ),
                    max_size=2,
                ),
                _TOML_VALUES,
            ),
        },
    ),
}


@st.composite
def _lock_docs(draw: Any) -> dict[str, Any]:
    from safepredict.lock.lockfile import SCHEMA_VERSION

    doc: dict[str, Any] = {"schema_version": draw(st.sampled_from([SCHEMA_VERSION] * 6 + [0, 2, -1, "1", True]))}
    for key in draw(st.lists(_LOCK_KEYS, max_size=5, unique=True)):
        doc[key] = draw(_LOCK_TABLES.get(key, _TOML_VALUES))
    return doc


def _read_lock_doc(doc: dict[str, Any]) -> Any:
    import tomli_w

    from safepredict.lock.lockfile import loads

    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return None  # not representable in TOML: no lock file can hold it
    return loads(text, "fuzz.lock")


@fuzz(1500)
@given(_lock_docs())
def test_fuzz_lock_documents(doc: dict[str, Any]) -> None:
    ends_typed(_read_lock_doc, doc)


@fuzz(700)
@given(st.text(max_size=300))
def test_fuzz_lock_text(text: str) -> None:
    from safepredict.lock.lockfile import loads

    ends_typed(loads, text, "fuzz.lock")


# ------------------------------------------------------------------------------- the reference profile


def _summary() -> dict[str, Any]:
    return {"n": 3, "mean": 1.0, "std": 0.5, "min": 0.0, "max": 2.0, "quantiles": {"0.5": 1.0}}


def valid_profile() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "score_threshold": 0.5,
        "threshold_key": "model.test_cfg.rcnn.score_thr",
        "class_names": ["a", "b"],
        "n_images": 3,
        "n_empty": 0,
        "n_without_candidates": 0,
        "n_nonfinite_images": 0,
        "score_bins": 2,
        "candidate_score_hist": [0.5, 0.5],
        "max_score_hist": [0.2, 0.8, 0.0],
        "max_score": _summary(),
        "candidates_per_image": _summary(),
        "detections_per_image": _summary(),
        "n_images_with_detections": 3,
        "class_share": [0.5, 0.5],
        "class_counts": [2, 2],
        "inputs": None,
        "chroma_hist": None,
        "chroma_std": None,
        "created": "",
    }


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)),
    max_leaves=8,
)


@st.composite
def _mutated_profiles(draw: Any) -> dict[str, Any]:
    data = valid_profile()
    for key in draw(st.lists(st.sampled_from(sorted(data)), max_size=3, unique=True)):
        action = draw(st.sampled_from(["drop", "json", "scalar"]))
        if action == "drop":
            data.pop(key)
        elif action == "json":
            data[key] = draw(_JSON)
        else:
            data[key] = draw(st.sampled_from(["x", -1, 1e308, math.inf, [], {}, [None], ["1", "x"], 10**30]))
    return data


def test_the_valid_profile_reads() -> None:
    from safepredict.monitor.profile import ReferenceProfile

    assert ReferenceProfile.from_json(valid_profile()).n_images == 3


@fuzz(2000)
@given(_mutated_profiles())
def test_fuzz_profile_documents(data: dict[str, Any]) -> None:
    from safepredict.monitor.profile import ReferenceProfile

    ends_typed(ReferenceProfile.from_json, data, "fuzz.json")


@fuzz(700)
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_fuzz_profile_files(content: bytes, tmp_path_factory: Any) -> None:
    from safepredict.monitor.profile import ReferenceProfile

    path = tmp_path_factory.mktemp("profile") / "safepredict-profile.json"
    path.write_bytes(content)
    ends_typed(ReferenceProfile.load, path)
