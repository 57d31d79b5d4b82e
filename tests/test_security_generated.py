"""An adversarial generator: configs built to cost, not random text. Every case ends typed, in time.

Random text (tests/test_security_fuzz.py) almost never shares a child forty times, nests four
hundred levels, or hides a width behind a nested mapping key: these strategies build exactly
that. Each one composes the structures of the attack classes (sharing, fan-out, nesting depth,
interpolation, format specs, long names, hashing, substitutions, name walks) at sizes far past the
readers' limits, and each case must end in a value or a SafePredictError within the deadline,
under the memory ceiling, running nothing (a payload writes a marker file).

The evaluator's own accounting is what the in-process cases test, with its limits scaled down
(work 20,000 units, values 5,000 nodes, ...): a cost it fails to charge then takes orders of
magnitude longer than the deadline, where the sizes below make it exponential. The child-process
guard is exercised on the LazyConfig cases, whose interpolations only the guard bounds.
10,740 cases in all, derandomized (the module checks it ran them).
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the importorskip
from hypothesis import strategies as st  # noqa: E402

from safepredict.errors import SafePredictError, UntrustedCodeError  # noqa: E402
from safepredict.frameworks import guard, safe_config, safe_yaml  # noqa: E402

pytestmark = pytest.mark.slow

MARKER = Path(__file__).resolve().parent.parent / ".generated-payload-ran"
PAYLOAD = f"__import__('pathlib').Path({str(MARKER)!r}).write_text('x')"
CEILING_MB = 256
SCALED = {
    "MAX_WORK": 20_000,
    "MAX_VALUE_NODES": 5_000,
    "MAX_ITEMS": 20_000,
    "MAX_BASE_FILES": 16,
    "MAX_TOTAL_CHARS": 200_000,
    "MAX_TEMPLATES": 100,
    "MAX_INT_BITS": 4096,
    "MAX_FORMAT_WIDTH": 1_000,
}


def generated(n: int, deadline_ms: int = 2000) -> Any:
    return settings(
        max_examples=n,
        deadline=deadline_ms,  # the scaled budget ends a case in milliseconds; a missed cost takes hours
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module", autouse=True)
def _scaled_limits() -> Iterator[None]:
    saved = {name: getattr(safe_config, name) for name in SCALED}
    saved_yaml = safe_yaml.MAX_EXPANDED_NODES
    for name, value in SCALED.items():
        setattr(safe_config, name, value)
    safe_yaml.MAX_EXPANDED_NODES = SCALED["MAX_VALUE_NODES"]
    # First imports take seconds and memory: not a hang of the first case, nor what it grew.
    safe_yaml.safe_load("s: !!python/object:detectron2.layers.shape_spec.ShapeSpec {}\n")
    for name in ("detectron2.modeling", "detectron2.data", "torchvision", "fvcore.common.param_scheduler",
                 "mmengine", "mmdet", "mmcv", "hypothesis.strategies"):
        try:
            __import__(name)
        except ImportError:
            pass
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(safe_config, name, value)
        safe_yaml.MAX_EXPANDED_NODES = saved_yaml


CASES: dict[str, int] = {}
GENERATORS = {
    "mmengine": 5200,
    "substitutions": 600,
    "bases": 300,
    "yaml": 2300,
    "targets": 1800,
    "types": 500,
    "lazy": 40,
}


def count(generator: str) -> None:
    CASES[generator] = CASES.get(generator, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _count() -> Iterator[None]:
    yield
    if set(CASES) == set(GENERATORS):  # the whole module ran: it ran the structured cases it claims
        assert sum(CASES.values()) >= 10_000, CASES


@pytest.fixture(autouse=True)
def _no_payload() -> Iterator[None]:
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a generated config ran code"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ends_typed(read: Any, *args: Any) -> Any:
    """``read(*args)``: a value or None for a SafePredictError; the peak RSS grown by less than the ceiling.

    (Measured around the read only: hypothesis's own bookkeeping of 5,000 cases takes ~300 MB.)
    """
    before = _peak_mb()
    try:
        return read(*args)
    except SafePredictError:
        return None
    finally:
        assert _peak_mb() - before < CEILING_MB, f"a read grew the peak RSS by {_peak_mb() - before:.0f} MB"


# ------------------------------------------------------------------------------- the mmengine language

_LEAVES = st.sampled_from(["1", "'x'", "None", "2.5", "(1,)", "[0]", "{'k': 1}", "b'y'", "1j", "..."])
_CONTAINERS = st.sampled_from(["list", "tuple", "dict", "set", "call"])
_SINKS = st.sampled_from(
    [
        "model = dict(x={v})",
        "d = {{{v}: 1}}",
        "s = set([{v}])",
        "e = {{}}.get({v})",
        "m = {{}}\nm[{v}] = 1",
        "z = [{v}] * 3",
        "w = {{'k': {v}}}",
        "t = f'{{{v}}}'",
        "p = '%s' % ({v},)",
        "q = {{}}[{v}]",
        "u = list({v}) + list({v})",
        "k = dict(a={v}).pop('a')",
        "c = [y for y in [{v}, {v}] if 0]",
        "n = len({v})",
        "g = {{**dict(a={v}), 'b': {v}}}",
    ]
)


def _share(kind: str, name: str, fan: int) -> str:
    refs = ", ".join([name] * fan)
    return {
        "list": f"[{refs}]",
        "tuple": f"({refs},)",
        "dict": "{" + ", ".join(f"'k{i}': {name}" for i in range(fan)) + "}",
        "set": f"{{({refs},)}}",
        "call": f"dict({', '.join(f'k{i}={name}' for i in range(fan))})",
    }[kind]


@st.composite
def sharing(draw: Any) -> str:
    """A value that holds its child ``fan`` times per level: fan**depth as a tree, depth values as a DAG."""
    depth = draw(st.integers(1, 60))
    fan = draw(st.integers(2, 4))
    kinds = draw(st.lists(_CONTAINERS, min_size=1, max_size=3))
    lines = [f"a0 = {draw(_LEAVES)}"]
    for i in range(depth):
        lines.append(f"a{i + 1} = {_share(kinds[i % len(kinds)], f'a{i}', fan)}")
    for _ in range(draw(st.integers(1, 3))):
        lines.append(draw(_SINKS).format(v=f"a{depth}"))
    return "\n".join(lines) + "\n"


@st.composite
def fan_out(draw: Any) -> str:
    """Nested comprehensions over big ranges, filters that keep nothing or everything."""
    loops = draw(st.integers(1, 4))
    names = [f"i{k}" for k in range(loops)]
    clauses = []
    for name in names:
        size = draw(st.sampled_from(["10", "1000", "10 ** 6", "len('x' * 10 ** 5)", "2 ** 20"]))
        clause = f"for {name} in range({size})"
        clause += draw(st.sampled_from(["", " if 0", f" if {name}", f" if {name} % 7", " if []"]))
        clauses.append(clause)
    element = draw(
        st.sampled_from(
            ["i0", "[i0] * 100", "'x' * 100", "(i0, i0)", "{i0: i0}", "str(i0)", "[]", "3 ** 20000 % (3 ** 10000 + i0)"]
        )
    )
    kind = draw(st.sampled_from(["[{e} {c}]", "{{{e} {c}}}", "{{i0: {e} {c}}}", "dict((i0, {e}) {c})", "set({e} {c})"]))
    return "x = " + kind.format(e=element, c=" ".join(clauses)) + "\n"


@st.composite
def nesting(draw: Any) -> str:
    """Displays, calls, unary and binary operators nested hundreds to thousands of levels."""
    depth = draw(st.integers(1, 3000))
    opener, closer = draw(
        st.sampled_from(
            [("[", "]"), ("(", ",)"), ("{'k': ", "}"), ("dict(k=", ")"), ("-", ""), ("(1 + ", ")"), ("[*", "]")]
        )
    )
    inner = draw(st.sampled_from(["1", "[]", "'s'", "x"]))
    prefix = "x = [1]\n" if inner == "x" else ""
    return f"{prefix}y = {opener * depth}{inner}{closer * depth}\n"


_WIDTHS = st.one_of(
    st.integers(0, 99).map(str),
    st.integers(10**3, 10**12).map(str),
    st.sampled_from(["*", "0" * 50 + "9" * 9, "٩٩٩٩٩٩٩", ""]),
)


@st.composite
def percent_spec(draw: Any) -> str:
    """A %-conversion, its width however spelled: behind a (nested) mapping key, after flags, as *."""
    key = ""
    if draw(st.booleans()):
        depth = draw(st.integers(0, 3))
        key = "(" + "(" * depth + draw(st.sampled_from(["a", "k", "a)b", ""])) + ")" * depth + ")"
    flags = draw(st.text(alphabet="-+ #0", max_size=4))
    width = draw(_WIDTHS)
    precision = "." + draw(_WIDTHS) if draw(st.booleans()) else ""
    length = draw(st.sampled_from(["", "l", "h", "L"]))
    return f"%{key}{flags}{width}{precision}{length}{draw(st.sampled_from(list('sdifxXeEgGcr%a')))}"


@st.composite
def formats(draw: Any) -> str:
    specs = "".join(draw(st.lists(percent_spec(), min_size=1, max_size=4)))
    args = draw(st.sampled_from(["1", "'x'", "(1, 2)", "{'a': 1, 'k': 'v', '(a)b': 2, '': 3, 'a)b': 4}", "(1.5,)"]))
    f_spec = draw(st.sampled_from(["", ":>{w}", ":0{w}d", ":.{w}f", ":{w}", ":x<{w}", ":,", ":_>{w}.{w}"]))
    w = draw(_WIDTHS.filter(lambda s: s != "*"))
    prefix = draw(st.sampled_from(["", "b"]))
    return f"w = {w or '0'!r}\np = {prefix}{specs!r} % {args}\nf = f'{{1.5{f_spec}}}'\n"


@st.composite
def strings(draw: Any) -> str:
    """String building: doubling, repetition, f-strings of grown strings."""
    lines = ["s = 'ab'"]
    for _ in range(draw(st.integers(1, 40))):
        lines.append(
            draw(st.sampled_from(["s = s + s", "s = s * 3", "s = f'{s}{s}'", "s = '%s%s' % (s, s)", "s += s"]))
        )
    return "\n".join(lines) + "\n"


@st.composite
def long_names(draw: Any) -> str:
    n = draw(st.sampled_from([1, 10, 1000, 100_000, 300_000]))
    name = draw(st.sampled_from(["a", "_", "é"])) * n
    form = draw(
        st.sampled_from(
            [
                f"{name} = 1",
                f"x = dict({name}=1)",
                f"x = {{'{name}': 1}}",
                f"x = _base_.{name}",
                f"x = {name}",
                f"{name} = [{name}]" if n < 1000 else f"x = '{name}'",
                f"x = y.{name}",
                f"del {name}",
            ]
        )
    )
    return form + "\n"


@st.composite
def hashing(draw: Any) -> str:
    depth = draw(st.integers(1, 50))
    lines = ["t0 = (1, 'x')"] + [f"t{i + 1} = (t{i}, t{i})" for i in range(depth)]
    use = draw(
        st.sampled_from(
            [
                "d = {{{t}: 1}}",
                "s = {{{t}}}",
                "z = set([{t}, {t}])",
                "g = {{}}.get({t})",
                "c = {{{t}: i for i in range(3)}}",
                "q = dict([({t}, 1)])",
            ]
        )
    )
    return "\n".join(lines) + "\n" + use.format(t=f"t{depth}") + "\n"


@st.composite
def updates(draw: Any) -> str:
    size = draw(st.sampled_from([10, 1000, 100_000]))
    lines = [f"v = dict(zip(range({size}), range({size})))", "d = {}"]
    for _ in range(draw(st.integers(1, 50))):
        lines.append(
            draw(
                st.sampled_from(
                    [
                        "d.update(v)",
                        "d.update(**{'a': v})",
                        "x = set(v)",
                        "y = list(v)",
                        "z = {**v}",
                        "w = dict(v)",
                        "u = [*v]",
                        "e = {*v}",
                    ]
                )
            )
        )
    return "\n".join(lines) + "\n"


@st.composite
def payloads(draw: Any) -> str:
    """The constructs that would run code, in the places the structures above put values."""
    wrap = draw(
        st.sampled_from(
            [
                "x = {p}",
                "x = [{p} for _ in [0]]",
                "x = f'{{{p}}}'",
                "x = dict(a={p})",
                "x = {{{p}: 1}}",
                "x = '%s' % ({p},)",
                "x = [1][{p}]",
                "_base_ = {p}",
            ]
        )
    )
    return wrap.format(p=PAYLOAD) + "\n"


MM_PROGRAMS = st.one_of(
    sharing(), fan_out(), nesting(), formats(), strings(), long_names(), hashing(), updates(), payloads()
)


@generated(5200)
@given(st.lists(MM_PROGRAMS, min_size=1, max_size=3).map("".join))
def test_generated_mmengine_configs_end_typed(source: str) -> None:
    count("mmengine")
    value = ends_typed(safe_config._read_here, "generated.py", source)
    assert value is None or isinstance(value, tuple)


# ------------------------------------------------------------------------------- substitutions and bases


@st.composite
def templated(draw: Any) -> tuple[str, str]:
    """``{{...}}`` substitutions: many, unclosed, long, of big base values; with a base file."""
    site = draw(
        st.sampled_from(
            [
                "{{$SAFEPREDICT_GEN_NOPE:a}}",
                "{{$A:",
                "{{ fileDirname }}",
                "{{_base_.x}}",
                "{{",
                "{{_base_.",
                "{{$HOME:x}}",
                "{{ fileBasename",
                "{{'$X:" + "y" * 5000 + "'}}",
            ]
        )
    )
    count = draw(st.sampled_from([1, 10, 99, 100, 101, 5000]))
    filler = draw(st.sampled_from(["", " ", "x" * 100, "\n"]))
    body = f"y = '{(site + filler) * count}'\n" if draw(st.booleans()) else f"# {(site + filler) * count}\nz = 1\n"
    if "_base_." in site and draw(st.booleans()):
        body = f"y = [{(site + ',') * min(count, 99)}]\n" if site.endswith("}}") else body
    base_value = draw(st.sampled_from(["[0]", "[[0] * 70] * 70", "'s' * 5000", "dict(a=1)"]))
    return body, f"x = {base_value}\n"


@generated(600)
@given(files=templated())
def test_generated_substitutions_end_typed(files: tuple[str, str], tmp_path_factory: Any) -> None:
    count("substitutions")
    root = tmp_path_factory.mktemp("tpl", numbered=True)
    (root / "b.py").write_text(files[1])
    (root / "cfg.py").write_text("_base_ = './b.py'\n" + files[0])
    ends_typed(safe_config._read_here, str(root / "cfg.py"))


@st.composite
def base_graphs(draw: Any) -> dict[str, str]:
    """``_base_`` / ``_BASE_`` fan-out and DAGs: each level lists the next ``fan`` times."""
    yacs = draw(st.booleans())
    levels = draw(st.integers(1, 30))
    fan = draw(st.integers(1, 4))
    repeat = draw(st.sampled_from([1, 2, 17, 1000]))
    ext = "yaml" if yacs else "py"
    files: dict[str, str] = {}
    for i in range(levels):
        names = [f"l{i + 1}.{ext}"] * fan
        if yacs:
            files[f"l{i}.{ext}"] = f"_BASE_: [{', '.join(names)}]\nK{i}: {{A: {i}}}\n"
        else:
            files[f"l{i}.{ext}"] = f"_base_ = {[f'./{n}' for n in names]!r}\n"
    files[f"l{levels}.{ext}"] = "K: 1\n" if yacs else "k = 1\n"
    top = [f"l0.{ext}"] * repeat
    files[f"cfg.{ext}"] = f"_BASE_: [{', '.join(top)}]\n" if yacs else f"_base_ = {[f'./{n}' for n in top]!r}\n"
    return files


@generated(300)
@given(files=base_graphs())
def test_generated_base_graphs_end_typed(files: dict[str, str], tmp_path_factory: Any) -> None:
    count("bases")
    root = tmp_path_factory.mktemp("bases", numbered=True)
    for name, text in files.items():
        (root / name).write_text(text)
    if "cfg.yaml" in files:
        ends_typed(safe_yaml._read_yacs_here, str(root / "cfg.yaml"))
    else:
        ends_typed(safe_config._read_here, str(root / "cfg.py"))


# ------------------------------------------------------------------------------- YAML


@st.composite
def yaml_documents(draw: Any) -> str:
    kind = draw(st.sampled_from(["aliases", "flow", "block", "sexagesimal", "long", "tags", "eval"]))
    if kind == "aliases":
        depth, fan = draw(st.integers(1, 12)), draw(st.integers(2, 12))
        lines = ["a0: &a0 [x, x]"] + [f"a{i + 1}: &a{i + 1} [{', '.join([f'*a{i}'] * fan)}]" for i in range(depth)]
        return "\n".join(lines) + "\n"
    if kind == "flow":
        depth = draw(st.integers(1, 5000))
        o, c = draw(st.sampled_from([("[", "]"), ("{a: ", "}"), ("[{a: ", "}]"), ("!!python/tuple [", "]")]))
        return f"x: {o * depth}1{c * depth}\n"
    if kind == "block":
        depth = draw(st.integers(1, 600))
        unit = draw(st.sampled_from(["- ", "? ", "a: "]))
        if unit == "a: ":
            return "".join(" " * i + "a:\n" for i in range(depth)) + " " * depth + "1\n"
        return unit * depth + "x\n"
    if kind == "sexagesimal":
        n = draw(st.sampled_from([1, 10, 30, 1000, 100_000]))
        return f"x: {draw(st.sampled_from(['1', '-1', '+1', '1.5']))}{':59' * n}\n"
    if kind == "long":
        n = draw(st.sampled_from([10, 10_000, 500_000]))
        return f"x: {draw(st.sampled_from(['9', 'a', '1e9', '0x1']))}{'9' * n}\n"
    if kind == "tags":
        tag = draw(
            st.sampled_from(
                [
                    "!!python/object/apply:os.system",
                    "!!python/name:os.system",
                    "!!python/tuple",
                    "!!python/int",
                    "!!python/object:detectron2.layers.shape_spec.ShapeSpec",
                    "!!python/object/new:dict",
                    "!<tag:yaml.org,2002:python/module:os>",
                    "!!set",
                ]
            )
        )
        arg = draw(st.sampled_from(["[]", "{}", "''", "[1, 2]", "{channels: 3}", f"['{MARKER}']", "x"]))
        return f"x: {tag} {arg}\n"
    expression = draw(st.one_of(fan_out(), nesting(), hashing(), sharing(), payloads())).splitlines()[-1]
    expression = expression.split("=", 1)[-1].strip()
    return f"x: !!python/object/apply:eval [{expression!r}]\n"


@generated(2300)
@given(yaml_documents())
def test_generated_yaml_ends_typed(text: str) -> None:
    count("yaml")
    ends_typed(safe_yaml.safe_load, text, "generated.yaml")


# ------------------------------------------------------------------------------- names


_PARTS = [
    "torch",
    "torchvision",
    "detectron2",
    "fvcore",
    "os",
    "sys",
    "builtins",
    "nn",
    "modules",
    "module",
    "functional",
    "utils",
    "registry",
    "pydoc",
    "locate",
    "system",
    "eval",
    "exec",
    "modeling",
    "layers",
    "Conv2d",
    "ResNet",
    "make_default_stages",
    "common",
    "file_io",
    "PathManager",
    "yaml",
    "unsafe_load",
    "config",
    "instantiate",
    "subprocess",
    "Popen",
    "optim",
    "SGD",
    "hub",
    "load",
    "importlib",
    "import_module",
    "_C",
    "__class__",
    "data",
    "DatasetMapper",
    "FPN",
    "param_scheduler",
    "torch",
]


def _assert_safe_object(obj: Any, namespaces: tuple[str, ...]) -> None:
    import types

    home = getattr(obj, "__module__", "")
    assert callable(obj) and not isinstance(obj, types.ModuleType), obj
    assert any(home == ns.rstrip(".") or home.startswith(ns) for ns in namespaces), (obj, home)
    assert not {"os", "posix", "sys", "builtins", "subprocess", "pydoc", "importlib"} & set(home.split(".")), obj


@generated(1800)
@given(st.lists(st.sampled_from(_PARTS), min_size=1, max_size=7).map(".".join))
def test_generated_lazy_targets_resolve_only_inside_the_namespaces(name: str) -> None:
    pytest.importorskip("detectron2")
    from detectron2.utils.registry import locate

    count("targets")
    try:
        safe_yaml.check_lazy_targets({"model": {"_target_": name}}, "generated.yaml")
    except UntrustedCodeError:
        return
    _assert_safe_object(locate(name), safe_yaml.LAZY_TARGET_NAMESPACES)


_MM_NAMES = st.one_of(
    st.tuples(
        st.sampled_from(["mmengine", "mmdet", "mmcv", "mmpretrain", "os", "torch"]),
        st.sampled_from(
            [
                "Config",
                "HTTPBackend",
                "PickleHandler",
                "FileClient",
                "Registry",
                "ResNet",
                "ConvNeXt",
                "BaseTransform",
                "Compose",
                "LoadImageFromFile",
                "MMLogger",
                "system",
                "DefaultScope",
                "ConfigDict",
                "digit_version",
                "X",
            ]
        ),
    ).map(".".join),
    st.sampled_from(["ResNet", "FasterRCNN", "os", "subprocess", "mmdet", "safepredict", "json"]),
)


@generated(500)
@given(_MM_NAMES)
def test_generated_mmengine_types_reach_nothing_outside_openmmlab(name: str) -> None:
    pytest.importorskip("mmengine")
    from mmengine.utils import get_object_from_string

    count("types")
    try:
        safe_config.check_mmengine_types({"model": {"type": name}}, "generated.py")
    except UntrustedCodeError:
        return
    if "." in name:
        found = get_object_from_string(name)
        if found is not None:
            _assert_safe_object(found, tuple(f"{s}." for s in safe_config.OPENMMLAB_SCOPES))


# ------------------------------------------------------------------------------- LazyConfig, through the guard


@st.composite
def lazy_documents(draw: Any) -> str:
    """Interpolations that fan out per level, with targets that walk or do not."""
    depth = draw(st.integers(0, 40))
    fan = draw(st.integers(1, 3))
    lines = [f"a0: {draw(st.sampled_from(['x', 'torch.os', 'torch.nn', '1']))}"]
    lines += [f"a{i + 1}: '{'${a' + str(i) + '}' * fan}'" for i in range(depth)]
    target = draw(
        st.sampled_from(
            [
                "torch.nn.Conv2d",
                "torch.os.system",
                "${a0}.system",
                "${a0}.Conv2d",
                "detectron2.modeling.ResNet.make_default_stages",
                "os.system",
            ]
        )
    )
    lines.append(f"model: {{_target_: '{target}', _args_: ['touch {MARKER}'], x: '${{a{depth}}}'}}")
    return "\n".join(lines) + "\n"


@generated(40, deadline_ms=15_000)
@given(text=lazy_documents())
def test_generated_lazyconfigs_end_typed_through_the_guard(text: str, tmp_path_factory: Any) -> None:
    pytest.importorskip("detectron2")
    from safepredict.frameworks.detectron2.contract import load_config

    count("lazy")
    path = tmp_path_factory.mktemp("lazy", numbered=True) / "lazy.yaml"
    path.write_text(text)
    with guard.limited(memory_mb=CEILING_MB, cpu_s=1, wall_s=0.5):
        ends_typed(load_config, path)
