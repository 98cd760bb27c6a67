"""tokenize's shards are byte-identical to the stored golden manifests (tests/tokenize_golden.py wrote
them from the job as it was before its rewrite): every shard's .bin and .idx sha256, the .parquet rows,
the counts, for gpt2 with two seeds, with --upsample-by, and for a uint32 vocabulary."""

from __future__ import annotations

import pytest

from tests import tokenize_golden


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tokenize_golden.write_corpus(tmp_path_factory.mktemp("golden") / "corpus")


@pytest.mark.parametrize("name", sorted(tokenize_golden.CONFIGURATIONS))
def test_shards_equal_the_golden_manifest(spark, corpus, tmp_path, name):
    found = tokenize_golden.run(name, corpus, tmp_path)
    expected = tokenize_golden.golden(name)
    assert found["counts"] == expected["counts"]
    assert found == expected
