"""A file to try completions on: `codellama-lsp complete examples/demo.py:14:12 --show-prompt`."""

import os


def list_python_files(folder):
    """Return the paths of the .py files under ``folder``, sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        for name in files:
            if name.endswith(".py"):
                found.append(os.path.join(root, name))
    found.sort()
    return found


def count_lines(path):
    with open(path) as f:
        return sum(1 for _ in f)
