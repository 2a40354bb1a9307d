"""quant_core: post-training quantization of TF/Keras image classifiers, measured honestly.

The engine behind the workbench: a Python API and a CLI (`python -m quant_core`).
It never imports streamlit.

Typical use::

    from quant_core import CompareOptions, CompareRequest, run_compare
    result = run_compare(CompareRequest("model.keras", ("images/",)))
"""

from quant_core.cache import ArtifactCache, KeptModels, MissingModelError, ModelStore
from quant_core.compare import CompareOptions, CompareRequest, Progress, Workbench, run_compare
from quant_core.errors import (Cancelled, ConversionError, ImageError, InputError, InternalError, QuantError,
                               UnsafeModelError, UnsupportedModelError)
from quant_core.inputs.images import ImageSet, load_images, read_labels_file
from quant_core.inputs.models import ModelInfo, SourceModel, load_model
from quant_core.inputs.preprocess import (ChannelOrder, Normalization, Preprocessing, PreprocessingOverride, Preset,
                                          ResizeMethod)
from quant_core.modes import MODE_INFO, Backend, IOType, Mode
from quant_core.recipe import CalibrationSource, Recipe
from quant_core.results.compare_result import CompareResult, VariantResult
from quant_core.results.report import report_dict, variants_csv

__all__ = [
    "ArtifactCache", "Backend", "CalibrationSource", "Cancelled", "ChannelOrder", "CompareOptions", "CompareRequest",
    "CompareResult", "ConversionError", "IOType", "ImageError", "ImageSet", "InputError", "InternalError",
    "KeptModels", "MODE_INFO", "MissingModelError", "Mode", "ModelInfo", "ModelStore", "Normalization",
    "Preprocessing", "PreprocessingOverride", "Preset", "Progress", "QuantError", "Recipe", "ResizeMethod",
    "SourceModel", "UnsafeModelError", "UnsupportedModelError", "VariantResult", "Workbench", "load_images",
    "load_model", "read_labels_file", "report_dict", "run_compare", "variants_csv",
]
