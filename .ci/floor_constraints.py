"""Print pip constraints that pin every dependency in pyproject.toml to its declared minimum:
`python .ci/floor_constraints.py pyproject.toml > floor.txt` (for the CI job that tests the floors).

torch is left out: a package registry serves older torch releases only as multi-GB CUDA builds, so
the floor job runs on the CPU build of the lock (requirements/lock.txt) and the torch floor is the
one requirement CI does not exercise.
"""

import re
import sys

import tomllib

NOT_EXERCISED = {"torch"}


def main(path: str) -> int:
    with open(path, "rb") as f:
        project = tomllib.load(f)["project"]
    requirements = list(project["dependencies"])
    for extra in ("dev",):
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$", requirement)
        name, spec = match.group(1), match.group(2)
        floor = re.search(r">=\s*([^,\s;]+)", spec)
        if floor is None:
            print(f"{path}: dependency {requirement!r} declares no minimum (>=); declare one.", file=sys.stderr)
            return 1
        if name.lower() not in NOT_EXERCISED:
            print(f"{name}=={floor.group(1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
