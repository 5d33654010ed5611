"""Import torchaudio, or say which torch / torchaudio pair is installed and how to fix it."""

from __future__ import annotations

from importlib import metadata

__all__ = ["import_torchaudio"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def import_torchaudio():
    """Import and return `torchaudio`, or explain why it cannot load next to this torch.

    torchaudio's compiled extension is built against one torch: next to another it fails at import
    with an error that says nothing about versions.

    Returns:
        The `torchaudio` module, with `torchaudio.functional` (which loads the compiled extension)
        imported.

    Raises:
        ImportError: torchaudio is not installed or cannot load next to the installed torch,
            naming both versions and the pip command that installs a matching pair.
    """
    try:
        import torchaudio
        import torchaudio.functional  # noqa: F401  (loads the compiled extension where it is used)
    except (ImportError, OSError) as e:
        raise ImportError(
            f"torchaudio {_version('torchaudio')} cannot load next to torch {_version('torch')}: {e}. Install a matching "
            "pair: `pip install 'torch>=2.14,<2.16' 'torchaudio>=2.11.1,<2.12'` (what `pip install fastspecnorm` "
            "resolves), or keep torch 2.11 with `pip install torchaudio==2.11.0`."
        ) from e
    return torchaudio
