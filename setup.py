"""Packaging metadata lives in pyproject.toml; this file only maps `tasks/` to `lmrl.tasks`."""

from setuptools import find_packages, setup

task_packages = ["lmrl.tasks"] + [f"lmrl.tasks.{name}" for name in find_packages("tasks")]
setup(
    packages=find_packages(include=["lmrl", "lmrl.*"]) + task_packages,
    package_dir={"lmrl.tasks": "tasks"},
)
