"""The server's own log: where quant_core's records (incidents, worker output) go under `streamlit run`."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: int = logging.INFO) -> None:
    """Sends quant_core's records to the server's stderr (once per process; reruns call it again).

    Streamlit configures only its own loggers, so without this an incident's traceback
    would rely on Python's last-resort handler, which drops everything below WARNING.
    """
    logger = logging.getLogger("quant_core")
    if any(getattr(h, "_workbench", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler._workbench = True  # type: ignore[attr-defined]  # marks ours, so reruns do not add another
    logger.addHandler(handler)
    logger.setLevel(level)
