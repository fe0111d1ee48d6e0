"""Reading the files a user hands us (configs, exports, weights) with one clear error.

Every reader here raises ``ValueError`` whose message starts with the file's path and says
what is wrong with it, so a truncated ``runtime.json`` or a corrupted ``model.safetensors``
surfaces as one line from the ``slowfast`` command instead of a parser's traceback.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path


def read_json(path: str | Path):
    """The JSON document in ``path``; ValueError naming the file when it is unreadable or
    not valid JSON (truncated, corrupted, nested too deeply)."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text (JSON) file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno};"
                         " truncated or corrupted?)") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deeply)") from None


def writable_folder(path: str | Path) -> Path:
    """Create ``path`` (and its parents) and prove it takes a file; OSError naming it when
    it cannot (a file in the way, no permission, a read-only or full disk)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"{path}: not writable ({exc.strerror or exc})") from None
    return path


def _safetensors_error(path: Path, exc: Exception) -> ValueError:
    return ValueError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc};"
                      " truncated or corrupted?)")


def load_safetensors(path: str | Path, device: str = "cpu") -> dict:
    """All tensors of a ``.safetensors`` file; ValueError naming the file when it is truncated,
    corrupted or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise _safetensors_error(path, exc) from None


@contextmanager
def open_safetensors(path: str | Path, device: str = "cpu"):
    """``safe_open`` with the same one-line error as :func:`load_safetensors` (header problems
    are found on open, data problems when a tensor is read inside the block)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        fh = safe_open(str(path), framework="pt", device=device)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise _safetensors_error(path, exc) from None
    try:
        with fh:
            yield fh
    except (SafetensorError, RuntimeError) as exc:
        raise _safetensors_error(path, exc) from None
