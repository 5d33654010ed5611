"""The torchaudio import guard: a torchaudio that cannot load next to torch gives an ImportError
naming both versions and the fix (simulated with a stand-in torchaudio package that fails like a
wrong pair does)."""

import subprocess
import sys
import textwrap
from importlib import metadata

import pytest


def _import_with_fake_torchaudio(tmp_path, body: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(textwrap.dedent(body))
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from fastspecnorm import AudioToSpec  # the first use imports torchaudio"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.process
def test_undefined_symbol_names_both_versions_and_the_fix(tmp_path):
    res = _import_with_fake_torchaudio(
        tmp_path, 'raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")'
    )
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: torchaudio ")
    assert f"torchaudio {metadata.version('torchaudio')} cannot load next to torch {metadata.version('torch')}" in last
    assert "undefined symbol" in last
    assert "pip install" in last and "torch>=2.14" in last


@pytest.mark.process
def test_missing_library_is_reported_the_same_way(tmp_path):
    res = _import_with_fake_torchaudio(tmp_path, 'raise ImportError("libc10_cuda.so: cannot open shared object file")')
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode != 0 and last.startswith("ImportError: torchaudio ") and "libc10_cuda.so" in last
