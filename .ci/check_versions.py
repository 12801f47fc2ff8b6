"""Check that the installed packages are exactly the pinned ones: `python .ci/check_versions.py PINS.txt`.

PINS.txt holds `name==version` lines (a pip-compile lock, or the floor constraints); comments and
other lines are ignored. Exits 1, listing every difference, when a pinned package is missing or at
another version, so that `make install` never leaves an environment other than the tested one.
"""

import re
import sys
from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(path: str) -> int:
    pins = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines:
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line.strip())
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    differences = []
    for name, wanted in sorted(pins.items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            differences.append(f"{name}: not installed, {path} pins {wanted}")
            continue
        if Version(installed) != Version(wanted):
            differences.append(f"{name}: {installed} installed, {path} pins {wanted}")
    if differences:
        print(f"The environment differs from {path}:\n  " + "\n  ".join(differences)
              + "\nRemove .venv and run `make install` again (or `make lock` if pyproject.toml changed).")
        return 1
    print(f"{len(pins)} packages installed exactly as pinned in {path}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
