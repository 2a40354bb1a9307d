"""The web app's storage: published results (publications) and their schema's Alembic migrations.

Used by ui/ and bench; the engine, inputs and results never import it.
"""
