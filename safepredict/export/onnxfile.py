"""The ONNX file as safepredict writes and reads it: metadata, the graph's sha256, a bounded reader.

An ONNX file is one protobuf ``ModelProto``. safepredict keeps one JSON document in its
``metadata_props`` under :data:`METADATA_KEY` (the training contract, class names, where the
weights came from, the graph's input spec, the post-processing recipe, the exporting lock) and the
sha256 of that text under :data:`METADATA_SHA_KEY`. ``graph_sha256`` in the document is the sha256
of every top-level field of the ``ModelProto`` except ``metadata_props`` (field 14), in file order:
a changed graph, weight or opset is noticed, and writing the metadata does not change it.

This module reads the protobuf wire format itself (a few dozen lines): no ``onnx`` package is
needed to check a file, and nothing is deserialised beyond the top-level field boundaries and the
metadata strings before the sha256 checks pass.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from safepredict.errors import InputError, IntegrityError

METADATA_KEY = "safepredict.export"
METADATA_SHA_KEY = "safepredict.export.sha256"
FORMAT = "safepredict-onnx"
FORMAT_VERSION = 1

# protobuf's own limit for one message; larger models keep their weights as external data.
MAX_FILE_BYTES = 2 * 1024**3
MAX_METADATA_BYTES = 64 * 1024**2
_METADATA_FIELD = 14
# The fields of ModelProto (onnx.proto3): a file whose top level has others is not ONNX.
_MODEL_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25, 26}


def _not_onnx(path: Path, why: str) -> InputError:
    return InputError(
        f"{path} is not an ONNX model ({why})",
        expected="an ONNX ModelProto file (.onnx)",
        found=why,
        source=str(path),
        fix="pass the .onnx file written by `safepredict export` or another ONNX exporter",
    )


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """``(field, wire type, start, value start, end)`` of each top-level field."""
    pos = 0
    n = len(data)
    while pos < n:
        start = pos
        tag, pos = _varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            _, pos = _varint(data, pos)
            value = start
        elif wire == 1:
            value, pos = pos, pos + 8
        elif wire == 2:
            length, value = _varint(data, pos)
            pos = value + length
        elif wire == 5:
            value, pos = pos, pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos > n:
            raise ValueError("truncated field")
        yield field, wire, start, value, pos


def _entry(data: bytes | memoryview) -> tuple[str, str]:
    key = value = ""
    for field, wire, _, start, end in _fields(data):
        if wire != 2:
            continue
        text = bytes(data[start:end]).decode("utf-8", errors="replace")
        if field == 1:
            key = text
        elif field == 2:
            value = text
    return key, value


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, refusing a missing file, a folder or one above :data:`MAX_FILE_BYTES`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX file not found: {path}", found=str(path), fix="check the path")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(
            f"{path} is {size:,} bytes, more than an ONNX file holds without external data ({MAX_FILE_BYTES:,})",
            found=size,
            source=str(path),
            fix="export with the weights as external data beside the .onnx file",
        )
    return path.read_bytes()


def scan(data: bytes, path: Path) -> tuple[str, dict[str, str]]:
    """``(graph sha256, metadata_props)`` of a serialised ModelProto; InputError when it is not one."""
    view = memoryview(data)
    digest = hashlib.sha256()
    metadata: dict[str, str] = {}
    seen_graph = False
    try:
        for field, wire, start, value, end in _fields(view):
            if field not in _MODEL_FIELDS:
                raise ValueError(f"unknown top-level field {field}")
            if field == _METADATA_FIELD:
                if wire != 2 or end - value > MAX_METADATA_BYTES:
                    raise ValueError("malformed metadata_props")
                key, text = _entry(view[value:end])
                metadata[key] = text
                continue
            seen_graph = seen_graph or field == 7
            digest.update(view[start:end])
    except ValueError as exc:
        raise _not_onnx(path, str(exc)) from None
    if not seen_graph:
        raise _not_onnx(path, "no graph in it")
    return digest.hexdigest(), metadata


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)


def read_metadata(path: str | os.PathLike[str], data: bytes | None = None) -> tuple[dict[str, Any] | None, str, bytes]:
    """``(safepredict document or None, graph sha256, file bytes)``, with both sha256 checks done.

    A file without safepredict metadata gives ``None`` (its graph can still be read with declared
    preprocessing); a document or graph that changed since export raises IntegrityError.
    """
    path = Path(path)
    data = read_bytes(path) if data is None else data
    graph_sha, metadata = scan(data, path)
    text = metadata.get(METADATA_KEY)
    if text is None:
        return None, graph_sha, data
    recorded = metadata.get(METADATA_SHA_KEY)
    if recorded != sha256_text(text):
        raise IntegrityError(
            f"the safepredict metadata of {path} changed after export: its sha256 is {sha256_text(text)}, "
            f"the file records {recorded}",
            expected=recorded,
            found=sha256_text(text),
            source=str(path),
            fix="re-export the model with `safepredict export`; do not edit the metadata by hand",
        )
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise IntegrityError(f"the safepredict metadata of {path} is not JSON: {exc}", source=str(path)) from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise IntegrityError(f"the safepredict metadata of {path} is not a {FORMAT} document", source=str(path))
    if int(document.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(
            f"{path} was exported by a newer safepredict (format {document.get('format_version')}; "
            f"this one reads {FORMAT_VERSION})",
            found=document.get("format_version"),
            source=str(path),
            fix="upgrade safepredict",
        )
    if document.get("graph_sha256") != graph_sha:
        raise IntegrityError(
            f"the graph of {path} changed after export: its sha256 is {graph_sha}, the metadata records "
            f"{document.get('graph_sha256')}",
            expected=document.get("graph_sha256"),
            found=graph_sha,
            source=str(path),
            fix="use the file `safepredict export` wrote, or re-export the model",
        )
    return document, graph_sha, data
