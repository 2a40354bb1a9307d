"""What comes in: model files, images, archives, datasets and the preprocessing that feeds them to a model.

Never imports quant_core.serving or quant_core.store (tests/test_architecture.py checks it).
`parse_json` reads JSON a user gave (a labels file, a link's settings), refusing in one line
what cannot be read.
"""

from quant_core._serde import parse_json

__all__ = ["parse_json"]
