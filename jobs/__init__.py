"""The Spark layer and the entry points.

jobs/<job>.py   thin entry points for spark-submit / torchrun / python (jobs/tokens.py is `tokenize`:
                no file here may shadow a standard-library module, since a script's folder leads
                sys.path)
jobs/cli.py     the `tokenmill` command, built from the stages' settings declarations
jobs/stages/    one module per stage: its settings dataclass and `run_<stage>(spark, settings)`
jobs/spark/     every Spark-specific piece: session, datasets in/out through the storage layer,
                connected components, progress
"""
