"""Rehydration's table and repeat rule without Spark: FineWeb-2's published weights as known answers, the
TOML form (the docstring's example is the default table), bad tables refused, and documents repeated
with numbered copies."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import tomllib

from tokenmill.tokenizer import upsample
from tokenmill.tokenizer.upsample import FINEWEB2, UpsampleTable, load_table, repeat_documents


def test_fineweb2_table_gives_the_published_copies():
    # FineWeb-2's README: 1 -> 1, 2 -> 2, 3 -> 3, 4 -> 3, 5..99 -> 5, 100..999 -> 8, 1000 and more -> 1
    sizes = np.array([1, 2, 3, 4, 5, 99, 100, 999, 1000, 1_000_000])
    assert FINEWEB2.copies(sizes).tolist() == [1, 2, 3, 3, 5, 5, 8, 8, 1, 1]


def test_an_unknown_cluster_size_keeps_the_document_once():
    assert FINEWEB2.copies(np.array([0, -3])).tolist() == [1, 1]


def test_the_docstring_example_is_the_default_table():
    doc = upsample.__doc__
    example = textwrap.dedent(doc[doc.index("    [copies]") : doc.index("\n\n", doc.index("[copies]"))])
    rows = tomllib.loads(example)["copies"]
    assert UpsampleTable(tuple(sorted((int(size), copies) for size, copies in rows.items()))) == FINEWEB2


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "table.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_toml_table_loads_in_any_row_order(tmp_path):
    table = load_table(_toml(tmp_path, "[copies]\n10 = 4\n1 = 1\n2 = 2\n"))
    assert table.rows == ((1, 1), (2, 2), (10, 4))
    assert table.copies(np.array([1, 9, 10, 500])).tolist() == [1, 2, 4, 4]
    assert table.describe() == [[1, 1], [2, 2], [10, 4]]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[other]\n1 = 1\n", "needs a [copies] section"),
        ("[copies]\n2 = 2\n", "start at cluster size 1"),
        ("[copies]\n1 = 1\n5 = 0\n", "at least 1 copy"),
        ("[copies]\n1 = 1\nbig = 3\n", "whole cluster size"),
        ("[copies]\n1 = 1\n5 = 2.5\n", "whole number of copies"),
        ("[copies]\n1 = true\n", "whole number of copies"),
        ("[copies\n1 = 1\n", "cannot read it"),
    ],
)
def test_a_bad_table_is_refused_with_its_reason(tmp_path, text, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        load_table(_toml(tmp_path, text))


def test_a_missing_table_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot read it"):
        load_table(tmp_path / "absent.toml")


def test_documents_are_repeated_with_numbered_copies():
    batch = pa.RecordBatch.from_pydict(
        {
            "id": ["a", "b", "c", "d", "e"],
            "text": ["A", "B", "C", "D", "E"],
            "cluster_size": pa.array([1, 2, None, 4, 150], pa.int64()),
        }
    )
    out = repeat_documents(batch, FINEWEB2, "cluster_size")
    assert out.schema.names == ["id", "text", "copy"]
    assert out.column("id").to_pylist() == ["a", "b", "b", "c", "d", "d", "d", *["e"] * 8]
    assert out.column("text").to_pylist() == ["A", "B", "B", "C", "D", "D", "D", *["E"] * 8]
    assert out.column("copy").to_pylist() == [0, 0, 1, 0, 0, 1, 2, *range(8)]


def test_an_empty_batch_stays_empty():
    batch = pa.RecordBatch.from_pydict(
        {"id": pa.array([], pa.string()), "text": pa.array([], pa.string()), "size": pa.array([], pa.int64())}
    )
    assert repeat_documents(batch, FINEWEB2, "size").num_rows == 0
