"""p13n: personalize any LLM with a user's own data, and measure whether it worked.

Importing p13n is light: torch and the models load only when first used.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("p13n")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
