"""Step 5: which ops run in integer and which stayed float."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from quant_core.ops import OpKind, integer_verdict
from quant_core.results.report import variant_description, variant_title
from ui import charts, published

st.title("Ops")
result, _ = published.result_shown()
st.markdown(
    "NPUs, DSPs and the Edge TPU run only integer ops. A model is **integer-only** when no op reads or writes a "
    "float tensor; anything else falls back to the CPU at every float op, and each QUANTIZE/DEQUANTIZE at the "
    "boundary costs a pass over the tensor. *Hybrid* ops (dynamic range) keep float activations with int8 weights."
)
st.plotly_chart(charts.ops_chart(result), key="ops_chart")
for v in charts.ok_variants(result):
    ops = v.ops
    with st.expander(f"{variant_title(v)} (`{v.name}`): {ops.total} ops — {integer_verdict(ops)}",
                     expanded=v.name in ("int8", "int8_float_io") or bool(v.recipe.float_layers)):
        st.markdown(variant_description(v))
        kinds = [kind for kind in OpKind if kind is not OpKind.INDEX or ops.index]  # index ops only when any
        for col, kind in zip(st.columns(len(kinds)), kinds):
            col.metric(kind.value.upper() if kind in (OpKind.QUANTIZE, OpKind.DEQUANTIZE) else kind.value,
                       ops.of(kind))
        st.dataframe(pd.DataFrame([{"op": o.op, "runs as": o.kind.value, "count": o.count} for o in ops.by_op]),
                     hide_index=True, width="content")
