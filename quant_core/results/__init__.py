"""What goes out: the comparison's result dataclasses, its summary columns, the verdict, reports and the
whole-dataset scores folded into a comparison.

Never imports quant_core.serving or quant_core.store (tests/test_architecture.py checks it).
`to_jsonable` and `from_jsonable` turn results (any frozen dataclass here) into plain JSON and back.
"""

from quant_core._serde import from_jsonable, to_jsonable

__all__ = ["from_jsonable", "to_jsonable"]
