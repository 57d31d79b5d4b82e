"""``python -m safepredict``: the environment as the lock sees it; with arguments, the CLI.

``python -m safepredict`` prints what ``safepredict lock`` would pin here, each entry with its
value, where it was read and its rule. ``python -m safepredict check ...`` runs the CLI.
"""

from __future__ import annotations

import sys


def main() -> int:
    if len(sys.argv) > 1:
        from safepredict.cli import main as cli_main

        return cli_main(sys.argv[1:])
    from safepredict import __version__
    from safepredict.lock import capture_environment

    env = capture_environment()
    print(f"safepredict {__version__} on Python {sys.version.split()[0]} ({sys.executable})")
    print(env.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
