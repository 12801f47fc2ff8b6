"""Tasks shipped with lmrl, importable as `lmrl.tasks`."""
