"""The stages as typed functions: `run_<stage>(spark, settings) -> stats`, settings declared once."""
