"""Facts of the running machine, read the way the lock needs them.

Two depths. ``deep`` (``safepredict lock``, ``python -m safepredict``) may import torch and cv2
to ask them directly. Shallow (``safepredict check``, the predictor's startup check) never
imports torch: versions come from installed distribution metadata, the CUDA runtime from the
``torch/version.py`` file torch itself reads it from, cuDNN from the cuDNN distribution (pip
``nvidia-cudnn-cu*`` or conda ``cudnn``), OpenCV's build facts from the build summary embedded in
its binary. A module that is already imported is always asked directly, since that costs nothing
and is the truth for this process. Whatever cannot be known cheaply is reported as unverified,
never guessed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata as md
import json
import mmap
import os
import platform
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from safepredict._version import installed_version
from safepredict.lock.builds import local_build
from safepredict.lock.entries import CondaRecord, Environment, Fact, FileEntry, LocalBuild, PackageEntry
from safepredict.lock.rules import DEFAULT_FACT_RULES, DEFAULT_PACKAGE_RULES, USER_PACKAGE_RULE, Value

__all__ = ["Found", "Probe", "capture_environment", "file_entry", "sha256_file"]

# safepredict's package name -> the import name that identifies its distribution.
IMPORT_NAMES: dict[str, str] = {
    "torch": "torch",
    "torchvision": "torchvision",
    "detectron2": "detectron2",
    "mmdet": "mmdet",
    "mmcv": "mmcv",
    "mmengine": "mmengine",
    "opencv": "cv2",
    "numpy": "numpy",
    "pillow": "PIL",
    "onnxruntime": "onnxruntime",
}
# Python distribution name -> conda package name, where they differ.
CONDA_NAMES: dict[str, str] = {"torch": "pytorch", "opencv-python": "py-opencv", "opencv-python-headless": "py-opencv"}
# The distributions that install onnxruntime, and the library a build with CUDA adds.
ONNXRUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
_ORT_CUDA_LIBRARY = r"onnxruntime/capi/(lib)?onnxruntime_providers_cuda\.(so|dll)"
_CUDNN_DISTS = re.compile(r"^nvidia-cudnn(-cu\d+)?$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@attrs.frozen
class Found:
    """What a probe found: a value (None = absent), where it came from, and whether it is known at all."""

    value: Value
    source: str
    known: bool = True


UNKNOWN_TORCH = "not known without importing torch (run `safepredict check --deep`)"


class Probe:
    """Reads the installed environment; one per capture or check, caching what it has read.

    ``path`` is the distribution search path (default ``sys.path``) and ``prefixes`` the
    environment prefixes whose ``conda-meta`` records say what conda installed (default
    ``sys.prefix`` and ``$CONDA_PREFIX``): both are there to inspect an environment other than the
    running one, as the tests do with a conda prefix laid out on disk.
    """

    def __init__(self, *, deep: bool = False, path: Sequence[str] | None = None, prefixes: Iterable[str] | None = None):
        self.deep = deep
        self.path = list(path) if path is not None else None
        if prefixes is None:
            prefixes = [sys.prefix] + ([os.environ["CONDA_PREFIX"]] if os.environ.get("CONDA_PREFIX") else [])
        self.prefixes = [Path(p) for p in dict.fromkeys(prefixes) if (Path(p) / "conda-meta").is_dir()]
        self._dists: dict[str, md.Distribution | None] = {}
        self._top_level: dict[str, list[str]] | None = None
        self._conda: list[tuple[Path, dict[str, Any]]] | None = None
        self._in_process = self.path is None
        self._memo: dict[str, Any] = {}
        self._headers: dict[int, dict[str, list[str]]] = {}
        self._keep: list[md.Distribution] = []

    def memo(self, name: str, compute: Any) -> Any:
        """``compute(self)`` once per probe: several facts come from one read (OpenCV's build summary, NVML)."""
        if name not in self._memo:
            self._memo[name] = compute(self)
        return self._memo[name]

    # -- distributions -------------------------------------------------------------------------
    def distribution(self, name: str) -> md.Distribution | None:
        key = _norm(name)
        if key not in self._dists:
            try:
                found = (
                    md.distribution(name)
                    if self.path is None
                    else next(iter(md.distributions(name=name, path=self.path)))
                )
            except (md.PackageNotFoundError, StopIteration):
                found = None
            self._dists[key] = found
        return self._dists[key]

    def headers(self, dist: md.Distribution) -> dict[str, list[str]]:
        """The metadata headers of ``dist`` (Name, Version, Requires-Dist...), parsed once.

        ``Distribution.metadata`` runs the e-mail parser over the whole file, long description
        included, on every access; the headers end at the first blank line.
        """
        key = id(dist)
        if key not in self._headers:
            text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
            headers: dict[str, list[str]] = {}
            last = None
            for line in text.split("\n\n", 1)[0].splitlines():
                if line[:1] in (" ", "\t") and last is not None:
                    headers[last][-1] += "\n" + line.strip()
                    continue
                name, sep, value = line.partition(":")
                if sep:
                    last = name.strip().lower()
                    headers.setdefault(last, []).append(value.strip())
            self._headers[key] = headers
            self._keep.append(dist)  # id() stays unique while the distribution is alive
        return self._headers[key]

    def record_paths(self, dist: md.Distribution) -> list[str]:
        """The installed files of ``dist`` as POSIX paths relative to its location (from RECORD, read as text)."""
        text = dist.read_text("RECORD")
        if text is None:
            return [str(f).replace("\\", "/") for f in dist.files or ()]
        return [line.rsplit(",", 2)[0].strip('"') for line in text.splitlines() if line]

    def name_version(self, dist: md.Distribution) -> tuple[str, str]:
        h = self.headers(dist)
        return (h.get("name") or [""])[0], (h.get("version") or [""])[0]

    def distributions_for_import(self, import_name: str) -> list[str]:
        """Distribution names that install top-level package ``import_name`` (a scan of all: capture only)."""
        if self._top_level is None:
            mapping: dict[str, list[str]] = {}
            dists = md.distributions() if self.path is None else md.distributions(path=self.path)
            for dist in dists:
                name = self.name_version(dist)[0]
                if not name:
                    continue
                tops = (dist.read_text("top_level.txt") or "").split()
                if not tops:
                    tops = [Path(str(f)).parts[0] for f in dist.files or () if len(Path(str(f)).parts) > 1]
                    tops = [t for t in tops if not t.endswith((".dist-info", ".egg-info")) and t != ".."]
                for top in dict.fromkeys(tops):
                    mapping.setdefault(top, []).append(name)
            self._top_level = mapping
        return self._top_level.get(import_name, [])

    # -- conda -----------------------------------------------------------------------------------
    def conda_records(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every conda-meta record of the prefixes, parsed (a few hundred files: capture only)."""
        if self._conda is None:
            self._conda = [(p, rec) for p in self.prefixes for rec in _read_conda_meta(p / "conda-meta", "*.json")]
        return self._conda

    def conda_record(self, conda_name: str) -> tuple[Path, dict[str, Any]] | None:
        """The record of conda package ``conda_name``, reading only files named for it."""
        if self._conda is not None:
            return next(((p, r) for p, r in self._conda if r.get("name") == conda_name), None)
        for prefix in self.prefixes:
            for rec in _read_conda_meta(prefix / "conda-meta", f"{conda_name}-*.json"):
                if rec.get("name") == conda_name:
                    return prefix, rec
        return None

    def origin(self, dist: md.Distribution) -> str:
        """``conda`` when a conda-meta record owns this distribution's metadata, else its INSTALLER."""
        info = getattr(dist, "_path", None)  # the .dist-info directory of a PathDistribution
        name = _norm(self.name_version(dist)[0])
        if info is not None and self.prefixes:
            candidates = [r for r in (self.conda_record(CONDA_NAMES.get(name, name)),) if r is not None]
            for prefix, rec in candidates:
                try:
                    rel = Path(info).resolve().relative_to(prefix.resolve()).as_posix()
                except ValueError:
                    continue
                if any(f == rel or f.startswith(rel + "/") for f in rec.get("files", ())):
                    return "conda"
        installer = (dist.read_text("INSTALLER") or "").strip()
        return installer or "unknown"

    # -- packages --------------------------------------------------------------------------------
    def package(self, name: str, *, distribution: str | None = None, origin: str | None = None) -> PackageEntry:
        """The package ``name`` as installed now; ``distribution``/``origin`` say where the lock found it."""
        rule = DEFAULT_PACKAGE_RULES.get(name, USER_PACKAGE_RULE)
        if origin == "conda" and distribution:
            hit = self.conda_record(distribution)
            if hit is not None:
                return PackageEntry(name, str(hit[1].get("version")), rule, "conda", distribution)
        candidates = [distribution] if distribution else []
        if distribution is None or self.distribution(distribution) is None:
            import_name = IMPORT_NAMES.get(name)
            candidates += self.distributions_for_import(import_name) if import_name else [name]
        for cand in candidates:
            dist = self.distribution(cand) if cand else None
            if dist is not None:
                dist_name, version = self.name_version(dist)
                return PackageEntry(name, version, rule, self.origin(dist), dist_name)
        # No Python metadata: conda-forge's OpenCV, for one, installs cv2 without a dist-info.
        conda_name = {"opencv": "py-opencv", "torch": "pytorch"}.get(name, name)
        hit = self.conda_record(conda_name)
        if hit is not None:
            return PackageEntry(name, str(hit[1].get("version")), rule, "conda", conda_name)
        return PackageEntry(name, None, rule, "absent", distribution)

    # -- facts -----------------------------------------------------------------------------------
    def fact(self, key: str) -> Found:
        probe = _FACTS.get(key)
        if probe is None:
            return Found(None, f"safepredict {_version()} does not know how to read {key!r}", known=False)
        return probe(self)

    def module(self, name: str) -> Any:
        """The module if this process has it imported (or may import it, when deep), else None."""
        if not self._in_process:
            return None
        if name in sys.modules:
            return sys.modules[name]
        if self.deep:
            try:
                return __import__(name)
            except Exception:  # noqa: BLE001 - a broken install is a fact to record, not a crash
                return None
        return None

    def file_in(self, dist_name: str, relative: str) -> Path | None:
        dist = self.distribution(dist_name)
        if dist is None:
            return None
        path = Path(str(dist.locate_file(relative)))
        return path if path.exists() else None


def _version() -> str:
    return installed_version()


def _read_conda_meta(directory: Path, pattern: str) -> Iterable[dict[str, Any]]:
    for path in sorted(directory.glob(pattern)):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "name" in rec and "version" in rec:
            yield rec


# -- fact probes ---------------------------------------------------------------------------------


def _python_version(p: Probe) -> Found:
    return Found(platform.python_version(), "platform.python_version()")


def _python_impl(p: Probe) -> Found:
    return Found(platform.python_implementation(), "platform.python_implementation()")


def _system(p: Probe) -> Found:
    return Found(platform.system(), "platform.system()")


def _machine(p: Probe) -> Found:
    return Found(platform.machine(), "platform.machine()")


def _torch_version_file(p: Probe) -> dict[str, Value] | None:
    """The constants of torch/version.py, read as text: what ``torch.version`` would hold."""
    path = p.file_in("torch", "torch/version.py")
    return None if path is None else _constants(path)


def _constants(path: Path) -> dict[str, Value] | None:
    """Module-level constant assignments of a Python file, read without running it."""
    values: dict[str, Value] = {}
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            if value.value is None or isinstance(value.value, str | int | bool):
                values[target.id] = value.value
    return values


def _torch_cuda(p: Probe) -> Found:
    torch = p.module("torch")
    if torch is not None:
        return Found(torch.version.cuda, "torch.version.cuda")
    values = _torch_version_file(p)
    if values is None:
        if p.distribution("torch") is None:
            return Found(None, "torch not installed")
        return Found(None, "torch/version.py unreadable", known=False)
    return Found(values.get("cuda"), "torch/version.py (cuda)")


def _cudnn_from_int(v: int) -> str:
    # cuDNN 9 encodes 9.1.0 as 90100, cuDNN 8 encodes 8.9.2 as 8902.
    if v >= 90000:
        return f"{v // 10000}.{v % 10000 // 100}.{v % 100}"
    return f"{v // 1000}.{v % 1000 // 100}.{v % 100}"


def _torch_cudnn(p: Probe) -> Found:
    torch = p.module("torch")
    if torch is not None:
        version = torch.backends.cudnn.version()
        return Found(None if version is None else _cudnn_from_int(int(version)), "torch.backends.cudnn.version()")
    cuda = p.memo("torch.cuda", _torch_cuda)
    if cuda.known and cuda.value is None:
        return Found(None, f"no CUDA build of torch ({cuda.source})")
    # pip: cuDNN ships as nvidia-cudnn-cuXX, a dependency of the CUDA wheels of torch.
    torch_dist = p.distribution("torch")
    requires = (
        [_norm(re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0]) for r in p.headers(torch_dist).get("requires-dist", [])]
        if torch_dist
        else []
    )
    for name in requires:
        if _CUDNN_DISTS.match(name) and (dist := p.distribution(name)) is not None:
            dist_name, version = p.name_version(dist)
            return Found(".".join(version.split(".")[:3]), f"distribution {dist_name}")
    hit = p.conda_record("cudnn")
    if hit is not None:
        return Found(".".join(str(hit[1]["version"]).split(".")[:3]), "conda package cudnn")
    return Found(None, UNKNOWN_TORCH, known=False)


def _nvml() -> Any:
    try:
        import pynvml  # from nvidia-ml-py: `pip install safepredict[nvml]`
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound/DriverNotLoaded: no NVIDIA GPU here
        return False
    return pynvml


_PROC_DRIVER = Path("/proc/driver/nvidia/version")


def _driver(p: Probe) -> Found:
    nvml = _nvml()
    if nvml:
        try:
            version = nvml.nvmlSystemGetDriverVersion()
            return Found(version.decode() if isinstance(version, bytes) else str(version), "NVML")
        finally:
            nvml.nvmlShutdown()
    try:
        text = _PROC_DRIVER.read_text()
    except OSError:
        why = "NVML found no driver" if nvml is False else "no NVML bindings and no /proc/driver/nvidia"
        return Found(None, f"no NVIDIA driver ({why})")
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9.]+)", text)
    return Found(m.group(1) if m else None, str(_PROC_DRIVER), known=m is not None)


def _gpus(p: Probe) -> tuple[Found, Found]:
    nvml = _nvml()
    if not nvml:
        driver = p.memo("driver", _driver)
        if driver.value is None:
            return Found(None, driver.source), Found(None, driver.source)
        why = "NVIDIA driver present but no NVML bindings (pip install nvidia-ml-py)"
        return Found(None, why, known=False), Found(None, why, known=False)
    try:
        names, caps = [], []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            names.append(name.decode() if isinstance(name, bytes) else str(name))
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            caps.append(f"{major}.{minor}")
    finally:
        nvml.nvmlShutdown()
    if not names:
        return Found(None, "NVML: no GPU"), Found(None, "NVML: no GPU")
    return Found(", ".join(names), "NVML"), Found(", ".join(sorted(set(caps))), "NVML")


def _gpu_name(p: Probe) -> Found:
    return p.memo("gpus", _gpus)[0]


def _gpu_cc(p: Probe) -> Found:
    return p.memo("gpus", _gpus)[1]


_OPENCV_MARK = b"General configuration for OpenCV"


def _opencv_build_info(p: Probe) -> tuple[str | None, str]:
    cv2 = p.module("cv2")
    if cv2 is not None:
        return cv2.getBuildInformation(), "cv2.getBuildInformation()"
    # Without importing cv2 (~0.3 s): the same summary is a string constant in its binary.
    dist_names = p.distributions_for_import("cv2") if p.deep else []
    for name in dist_names or [
        "opencv-python",
        "opencv-python-headless",
        "opencv-contrib-python",
        "opencv-contrib-python-headless",
    ]:
        dist = p.distribution(name)
        if dist is None:
            continue
        for f in p.record_paths(dist):
            if re.fullmatch(r"cv2/cv2[^/]*\.(so|pyd)", f):
                text = _embedded_string(Path(str(dist.locate_file(f))), _OPENCV_MARK)
                if text is not None:
                    return text, f"build summary in {f}"
    return None, "OpenCV not installed or its build summary not found"


def _embedded_string(path: Path, mark: bytes) -> str | None:
    try:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
            start = m.rfind(mark)  # the summary sits near the end of the binary
            if start < 0:
                return None
            end = m.find(b"\0", start)
            return m[start : end if end > 0 else start + 20000].decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def _opencv_line(label: str) -> Any:
    def probe(p: Probe) -> Found:
        info, source = p.memo("opencv", _opencv_build_info)
        if info is None:
            return Found(None, source)
        m = re.search(rf"^\s*{re.escape(label)}:[ \t]*(.*?)\s*$", info, re.MULTILINE)
        return Found(m.group(1) if m else "NO", f"{source}: '{label}'")

    return probe


def _opencv_threads(p: Probe) -> Found:
    cv2 = p.module("cv2")
    if cv2 is None:
        return Found(None, "cv2 not imported", known=False)
    return Found(int(cv2.getNumThreads()), "cv2.getNumThreads()")


def _loadable_here(filename: str) -> bool:
    """Whether an extension module's file name fits this interpreter (``_C.cpython-310-...so`` does not on 3.11)."""
    import importlib.machinery

    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    if re.search(r"\.(cpython|cp|pypy)[-\w]*\.(so|pyd)$", filename):  # tagged for one interpreter
        return any(filename.endswith(s) for s in suffixes if s not in (".so", ".pyd"))
    return any(filename.endswith(s) for s in suffixes)


def _extension_state(p: Probe, dist_names: Sequence[str], pattern: str) -> Found:
    """Whether a compiled extension is there and built for this interpreter, from file names only."""
    for name in dist_names:
        dist = p.distribution(name)
        if dist is None:
            continue
        hits = [f for f in p.record_paths(dist) if re.fullmatch(pattern, f)]
        if not hits:
            return Found("missing", f"distribution {p.name_version(dist)[0]}: no {pattern}")
        ok = [f for f in hits if _loadable_here(f)]
        if ok:
            return Found("present", f"{ok[0]}")
        return Found(f"incompatible ({hits[0].rsplit('/', 1)[-1]})", f"{hits[0]}: not built for this interpreter")
    return Found(None, "not installed")


def _d2_version(p: Probe) -> Found:
    # Repacked wheels (sal-detectron2) carry their own distribution version: the module says what it is.
    module = p.module("detectron2")
    if module is not None:
        return Found(str(getattr(module, "__version__", None)), "detectron2.__version__")
    names = p.distributions_for_import("detectron2") if p.deep else []
    for name in names or ["detectron2", "sal-detectron2"]:
        path = p.file_in(name, "detectron2/__init__.py")
        if path is not None:
            version = (_constants(path) or {}).get("__version__")
            return Found(version, f"{path.parent.name}/__init__.py (__version__)", known=version is not None)
    return Found(None, "not installed")


def _d2_c(p: Probe) -> Found:
    names = p.distributions_for_import("detectron2") if p.deep else []
    return _extension_state(p, names or ["detectron2", "sal-detectron2"], r"detectron2/_C[^/]*\.(so|pyd)")


def _mmcv_ops(p: Probe) -> Found:
    return _extension_state(p, ["mmcv", "mmcv-full", "mmcv-lite"], r"mmcv/_ext[^/]*\.(so|pyd)")


def _onnxruntime_provider(p: Probe) -> Found:
    """The best execution provider onnxruntime offers here (see engines.providers.preferred_provider).

    Asked of onnxruntime where this process has it (or may import it); else read off the files: a
    build with CUDA (onnxruntime-gpu) installs the CUDA provider's library beside the runtime.
    """
    from safepredict.engines.providers import CPU, CUDA, preferred_provider

    module = p.module("onnxruntime")
    if module is not None:
        return Found(preferred_provider(module.get_available_providers()), "onnxruntime.get_available_providers()")
    for name in ONNXRUNTIME_DISTRIBUTIONS:
        dist = p.distribution(name)
        if dist is None:
            continue
        cuda = [f for f in p.record_paths(dist) if re.fullmatch(_ORT_CUDA_LIBRARY, f)]
        if cuda:
            return Found(CUDA, f"{cuda[0]} (the CUDA provider's library)")
        return Found(CPU, f"distribution {p.name_version(dist)[0]}: no CUDA provider library")
    return Found(None, "onnxruntime not installed")


_FACTS = {
    "python.version": _python_version,
    "python.implementation": _python_impl,
    "platform.system": _system,
    "platform.machine": _machine,
    "torch.cuda": lambda p: p.memo("torch.cuda", _torch_cuda),
    "torch.cudnn": _torch_cudnn,
    "nvidia.driver": lambda p: p.memo("driver", _driver),
    "gpu.name": _gpu_name,
    "gpu.compute_capability": _gpu_cc,
    "opencv.ipp": _opencv_line("Intel IPP"),
    "opencv.parallel_framework": _opencv_line("Parallel framework"),
    "opencv.hal": _opencv_line("Custom HAL"),
    "opencv.threads": _opencv_threads,
    "detectron2.version": _d2_version,
    "detectron2.c_extension": _d2_c,
    "mmcv.ops": _mmcv_ops,
    "onnxruntime.execution_provider": _onnxruntime_provider,
}

# Facts recorded only when the package they describe is installed.
_FACT_NEEDS = {
    "torch.cuda": "torch",
    "torch.cudnn": "torch",
    "opencv.ipp": "opencv",
    "opencv.parallel_framework": "opencv",
    "opencv.hal": "opencv",
    "opencv.threads": "opencv",
    "detectron2.version": "detectron2",
    "detectron2.c_extension": "detectron2",
    "mmcv.ops": "mmcv",
    "onnxruntime.execution_provider": "onnxruntime",
}


# -- files ---------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(
    role: str, path: str | os.PathLike[str], *, relative_to: str | os.PathLike[str] | None = None
) -> FileEntry:
    """Pin ``path`` by content; its path is stored relative to ``relative_to`` (the lock's folder) when inside it."""
    from safepredict.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"{role} file {str(p)!r} does not exist", source=str(p), fix=f"pass the {role} file that was validated"
        )
    shown = str(p)
    if relative_to is not None:
        try:
            shown = p.resolve().relative_to(Path(relative_to).resolve()).as_posix()
        except ValueError:
            shown = str(p.resolve())
    return FileEntry(role, shown, sha256_file(p), p.stat().st_size)


# -- capture -------------------------------------------------------------------------------------


def capture_environment(
    extra_packages: Iterable[str] = (),
    weights: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    *,
    relative_to: str | os.PathLike[str] | None = None,
    probe: Probe | None = None,
) -> Environment:
    """Capture the running environment as a lock sees it (may import torch and cv2 to ask them).

    ``extra_packages`` are distribution names to pin besides the default set; ``weights`` and
    ``config`` are pinned by sha256. ``probe`` inspects another environment (see :class:`Probe`).
    """
    p = probe or Probe(deep=True)
    packages = [p.package(name) for name in DEFAULT_PACKAGE_RULES]
    packages = [e for e in packages if e.version is not None]
    for name in extra_packages:
        key = _norm(name)
        if any(e.name == key for e in packages):
            continue
        entry = p.package(key, distribution=name)
        if entry.version is None:
            from safepredict._logging import warn

            warn(
                f"package {name!r} is not installed: the lock records it as absent, and a check fails if it appears",
                code="lock.package_absent",
                package=name,
            )
        packages.append(entry)
    present = {e.name for e in packages if e.version is not None}
    facts = []
    for key, rule in DEFAULT_FACT_RULES.items():
        need = _FACT_NEEDS.get(key)
        if need is not None and need not in present:
            continue
        found = p.fact(key)
        facts.append(Fact(key, found.value, rule, found.source if found.known else f"unknown: {found.source}"))
    files = []
    if weights is not None:
        files.append(file_entry("weights", weights, relative_to=relative_to))
    if config is not None:
        files.append(file_entry("config", config, relative_to=relative_to))
    conda = [_conda_record(rec) for _, rec in p.conda_records()]
    conda_dists = {e.distribution for e in packages if e.origin == "conda"}
    pip = []
    builds: dict[str, LocalBuild | None] = {}
    for dist in md.distributions() if p.path is None else md.distributions(path=p.path):
        name, version = p.name_version(dist)
        if not name or name in conda_dists or (p.prefixes and p.origin(dist) == "conda"):
            continue
        pip.append((name, version))
        # Built or repacked here, or installed from a file: what an export must say. Kept like the
        # version for a name installed twice (dict(pip) below).
        builds[name] = local_build(dist, name, version)
    pip = sorted(dict(pip).items(), key=lambda kv: kv[0].lower())
    ordered = sorted((b for b in builds.values() if b is not None), key=lambda b: b.name.lower())
    return Environment(packages=packages, facts=facts, files=files, conda=conda, pip=pip, builds=ordered)


def _conda_record(rec: dict[str, Any]) -> CondaRecord:
    return CondaRecord(
        name=str(rec["name"]),
        version=str(rec["version"]),
        build=str(rec.get("build", "")),
        build_number=int(rec.get("build_number", 0)),
        channel=str(rec.get("channel", "")),
        subdir=str(rec.get("subdir", "")),
        url=str(rec.get("url", "")),
        md5=str(rec.get("md5", "")),
        sha256=str(rec.get("sha256", "")),
        depends=tuple(str(d) for d in rec.get("depends", ())),
    )
