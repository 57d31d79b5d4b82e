"""Optional integrations with systems that run safepredict at scale.

Each integration is a module of its own that imports its system when it is imported, so that
``import safepredict`` (and this package) never needs it:

- :mod:`safepredict.integrations.ray`: Ray Data batch inference, one SafePredictor per actor,
  the environment lock checked on every worker (``pip install 'safepredict[ray]'``).
"""

from __future__ import annotations
