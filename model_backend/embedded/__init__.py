"""The small Code-Llama-format model that ships inside the package (used when no model is configured)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
