"""Streamlit-only glue between the pages and quant_core: state, cached engine calls, widgets, charts."""
