"""Griffe extension for the API pages: reads lmrl's docstrings as they are written.

- lmrl heads its examples "Example:" (singular). Griffe's Google-style parser reads only "Examples:" as an
  examples section (where `>>>` lines are code); "Example:" would become an admonition whose doctest
  lines render as nested block quotes. The heading is renamed before the docstring is parsed.
- lmrl names other objects as [`Name`] (the Hugging Face docs' style). mkdocs-autorefs resolves only
  [`title`][full.path], so the brackets are dropped and the name stays code.

Nothing in lmrl/ changes; the docstrings keep their style.
"""

import re

import griffe

_EXAMPLE_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_BRACKETED_NAME = re.compile(r"\[(`[^`\]\n]+`)\](?![\[(])")


class SingularExampleHeading(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            text = _EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _BRACKETED_NAME.sub(r"\1", text)
