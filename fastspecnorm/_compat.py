"""Import torchaudio, or say which torch / torchaudio pair is installed and how to fix it.

torchaudio's compiled extension is built against one torch: installed next to another it fails at
import with an undefined symbol or a missing CUDA library, which says nothing about versions.
Measured pairs (README, "Install"): torchaudio 2.11.1 loads with torch 2.14 and 2.15, not with
torch 2.11 to 2.13; torchaudio 2.11.0 loads with torch 2.11.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["import_torchaudio"]

_FIX = (
    "Install a matching pair: `pip install 'torch>=2.14,<2.16' 'torchaudio>=2.11.1,<2.12'` "
    "(what `pip install fastspecnorm` resolves), or keep torch 2.11 with `pip install torchaudio==2.11.0`."
)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def import_torchaudio():
    """Return the `torchaudio` module; raise ImportError naming the installed torch and torchaudio
    versions and the fix when it cannot load next to this torch."""
    try:
        import torchaudio
        import torchaudio.functional  # noqa: F401  (loads the compiled extension where it is used)
    except (ImportError, OSError) as e:
        raise ImportError(
            f"torchaudio {_version('torchaudio')} cannot load next to torch {_version('torch')}: {e}. {_FIX}"
        ) from e
    return torchaudio
