"""p13n: personalize any LLM with a user's own data, and measure whether it worked.

Importing p13n is light: torch and the models load only when first used.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# ONNX Runtime (the default encoder) and ONNX Runtime GenAI (the onnx backend) record usage
# telemetry by default: a device id and an event database under ~/.cache/Microsoft, to be sent
# to Microsoft. p13n sends and logs nothing anywhere: off unless the user sets it otherwise.
# Read when the runtimes load, so it must be set before they are imported.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

try:
    __version__ = version("p13n")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
