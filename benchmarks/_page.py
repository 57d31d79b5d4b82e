"""What every benchmark does with its result: print the Markdown page, and write it where asked."""

from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], out: Path | None) -> None:
    """Print the page made of ``lines``; also write it to ``out`` when given (``--out``)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)
