"""MinHash known answers on real text: the cs336 near-duplicate licences, exact vs estimated Jaccard,
the LSH S-curve on planted pairs, determinism across processes, and the presets' shapes."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tokenmill.pipeline.dedup.keys import dedup_keys, text_hash
from tokenmill.pipeline.dedup.minhash import (
    PRESETS,
    MinHashConfig,
    MinHasher,
    estimated_jaccard,
    normalize_for_dedup,
)

DATA = Path(__file__).parent / "data"
FUZZY = DATA / "dedup" / "documents_with_fuzzy_duplicates"
WIKI = DATA / "text" / "cs336_high_quality_wiki_reference.txt"
REPO = Path(__file__).resolve().parents[1]


def licence(name: str) -> str:
    return (FUZZY / f"{name}.txt").read_text()


def word_shingles(text: str, ngram: int = 5) -> set[tuple[str, ...]]:
    """The shingle set MinHash samples, built from strings (independently of the hashing)."""
    words = normalize_for_dedup(text).split()
    return {tuple(words[i : i + ngram]) for i in range(max(1, len(words) - ngram + 1))}


def exact_jaccard(a: str, b: str) -> float:
    sa, sb = word_shingles(a), word_shingles(b)
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def wiki_words() -> list[str]:
    return WIKI.read_text().split()


def edited(words: list[str], fraction: float, rng: random.Random, vocabulary: list[str]) -> str:
    """A copy with `fraction` of its words replaced by random real words."""
    copy = list(words)
    for position in rng.sample(range(len(copy)), round(fraction * len(copy))):
        copy[position] = rng.choice(vocabulary)
    return " ".join(copy)


def planted_pairs(words: list[str], count: int, length: int = 200) -> list[tuple[str, str, float]]:
    """(base, edited copy, exact Jaccard) for `count` windows of real text, edits spread so that the
    Jaccard similarities cover about 0.35..1."""
    rng = random.Random(7)
    pairs = []
    for _ in range(count):
        start = rng.randrange(len(words) - length)
        base = words[start : start + length]
        copy = edited(base, rng.uniform(0.0, 0.12), rng, words)
        base_text = " ".join(base)
        pairs.append((base_text, copy, exact_jaccard(base_text, copy)))
    return pairs


def test_normalization_rules():
    assert normalize_for_dedup("  Hello,\tWORLD!! \n") == "hello world"
    assert normalize_for_dedup("Café ﬁne Ｆｕｌｌ naïve") == "cafe fine full naive"
    assert normalize_for_dedup("Paid $1,000.50 on 2024-01-02 — ok?") == "paid 0 0 on 0 0 0 ok"
    assert normalize_for_dedup("don't © 2023 ★ İstanbul") == "don t 0 istanbul"
    assert normalize_for_dedup("?!… ¿¡") == ""


@pytest.mark.parametrize(
    ("name", "shingle", "ngram", "bands", "rows", "hashes"),
    [
        ("fineweb", "word", 5, 14, 8, 112),
        ("nemo", "char", 24, 20, 13, 260),
        ("redpajama", "word", 13, 9, 13, 128),
    ],
)
def test_preset_shapes(name, shingle, ngram, bands, rows, hashes):
    config = PRESETS[name]
    layout = (config.shingle, config.ngram, config.bands, config.rows, config.num_hashes)
    assert layout == (shingle, ngram, bands, rows, hashes)
    hasher = MinHasher(config)
    signature = hasher.signature(licence("rails_mit_license"))
    assert signature.dtype == np.uint64 and signature.shape == (hashes,)
    assert hasher.band_keys(signature).shape == (bands,)
    batch = hasher.band_keys_batch([licence("rails_mit_license"), "", "short text"])
    assert batch.dtype == np.uint64 and batch.shape == (3, bands)
    assert hasher.band_keys_batch([]).shape == (0, bands)


def test_redpajama_bands_are_datasketchs_choice_for_threshold_0_8():
    lsh = pytest.importorskip("datasketch.lsh")
    config = PRESETS["redpajama"]
    assert lsh._optimal_param(0.8, 128, 0.5, 0.5) == (config.bands, config.rows) == (9, 13)
    assert config.bands * config.rows == 117 < config.num_hashes


def test_config_validation():
    with pytest.raises(ValueError):
        MinHashConfig(shingle="token", ngram=5, bands=14, rows=8)
    with pytest.raises(ValueError):
        MinHashConfig(shingle="word", ngram=5, bands=14, rows=8, num_hashes=100)


def test_mit_licences_collide_and_bsd_collides_with_neither():
    """cs336's fuzzy-duplicate fixture: two MIT licences (Jaccard 0.92 on word 5-grams) and PyTorch's BSD."""
    hasher = MinHasher(PRESETS["fineweb"])
    names = ("react_mit_license", "rails_mit_license", "pytorch_license")
    react, rails, pytorch = (licence(name) for name in names)
    assert exact_jaccard(react, rails) == pytest.approx(159 / 173)
    keys = {
        name: set(hasher.band_keys(hasher.signature(text)).tolist())
        for name, text in (("react", react), ("rails", rails), ("pytorch", pytorch))
    }
    assert keys["react"] & keys["rails"]
    assert not keys["pytorch"] & keys["react"] and not keys["pytorch"] & keys["rails"]


def test_shingle_hashes_are_one_per_distinct_shingle(wiki_words):
    """No hash collisions among the ~10k distinct word 5-grams and char 24-grams of a real article."""
    text = " ".join(wiki_words)
    assert len(MinHasher(PRESETS["fineweb"]).shingles(text)) == len(word_shingles(text))
    normalized = normalize_for_dedup(text)
    char_grams = {normalized[i : i + 24] for i in range(len(normalized) - 23)}
    assert len(MinHasher(PRESETS["nemo"]).shingles(text)) == len(char_grams)


def test_estimates_match_exact_jaccard_on_planted_pairs(wiki_words):
    hasher = MinHasher(PRESETS["fineweb"])
    for base, copy, exact in planted_pairs(wiki_words, 40):
        estimate = estimated_jaccard(hasher.signature(base), hasher.signature(copy))
        standard_error = math.sqrt(max(exact * (1 - exact), 0.01) / 112)
        assert abs(estimate - exact) <= 4 * standard_error, (exact, estimate)


def test_estimate_is_unbiased_with_independent_permutations():
    """Over 300 seeds, one real pair (the MIT licences, J = 0.919): the mean estimate is within 4 standard
    errors of the exact value, and the variance is the binomial J (1 - J) / 112 of independent hashes."""
    react, rails = licence("react_mit_license"), licence("rails_mit_license")
    exact = exact_jaccard(react, rails)
    estimates = []
    for seed in range(300):
        hasher = MinHasher(MinHashConfig(shingle="word", ngram=5, bands=14, rows=8, seed=seed))
        estimates.append(estimated_jaccard(hasher.signature(react), hasher.signature(rails)))
    variance = exact * (1 - exact) / 112
    assert abs(np.mean(estimates) - exact) <= 4 * math.sqrt(variance / 300)
    assert 0.75 * variance <= np.var(estimates) <= 1.3 * variance


def test_band_collisions_follow_the_s_curve(wiki_words):
    """P(at least one shared band) = 1 - (1 - s^8)^14 on 400 planted pairs, each under its own seed so
    that the outcomes are independent: observed counts within 4 standard deviations, overall and per bin."""
    pairs = planted_pairs(wiki_words, 400)
    collided, predicted = [], []
    for seed, (base, copy, exact) in enumerate(pairs):
        config = MinHashConfig(shingle="word", ngram=5, bands=14, rows=8, seed=seed)
        hasher = MinHasher(config)
        keys = hasher.band_keys_batch([base, copy])
        collided.append(bool(np.any(keys[0] == keys[1])))
        predicted.append(config.collision_probability(exact))
    collided, predicted = np.array(collided), np.array(predicted)
    similarities = np.array([exact for _, _, exact in pairs])
    assert similarities.min() < 0.45 and similarities.max() == 1.0
    for low, high in ((0.0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01), (0.0, 1.01)):
        in_bin = (similarities >= low) & (similarities < high)
        p = predicted[in_bin]
        deviation = abs(collided[in_bin].sum() - p.sum())
        assert deviation <= 4 * math.sqrt((p * (1 - p)).sum()) + 1, (
            low,
            high,
            collided[in_bin].sum(),
            p.sum(),
        )


def test_batch_equals_single_and_empty_and_short_texts():
    hasher = MinHasher(PRESETS["fineweb"])
    texts = [licence("react_mit_license"), "", "!!! ...", "three short words", "Three  SHORT words."]
    batch = hasher.band_keys_batch(texts)
    signatures = hasher.signatures(texts)
    assert np.array_equal(hasher.band_keys(signatures), batch)
    for row, text in enumerate(texts):
        assert np.array_equal(signatures[row], hasher.signature(text))
        assert np.array_equal(batch[row], hasher.band_keys(signatures[row]))
    # Empty after normalization: the all-ones signature, shared by every empty text and nothing else.
    assert np.all(hasher.signature("") == np.iinfo(np.uint64).max)
    assert np.array_equal(batch[1], batch[2]) and not set(batch[1]) & set(batch[0])
    # Fewer words than n: the whole text is one shingle, so equal short texts collide in every band.
    assert len(hasher.shingles("three short words")) == 1
    assert np.array_equal(batch[3], batch[4]) and not set(batch[3]) & set(batch[1])


def test_keys_are_identical_in_a_fresh_process():
    texts = [licence("react_mit_license"), licence("pytorch_license"), "Ünïcode text, with 3 numbers!"]
    script = (
        "import json, sys\n"
        "from tokenmill.pipeline.dedup.minhash import PRESETS, MinHasher\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps({name: MinHasher(config).band_keys_batch(texts).tolist()"
        " for name, config in PRESETS.items()}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    fresh = json.loads(result.stdout)
    for name, config in PRESETS.items():
        assert MinHasher(config).band_keys_batch(texts).tolist() == fresh[name]


def test_keys_normalize_each_text_once_with_the_same_result():
    """`dedup_keys` normalizes a text once for both its hash and its signature; the keys equal those of
    the texts normalized separately for each (accents, case, numbers, a null text, an empty one)."""
    hasher = MinHasher(PRESETS["fineweb"])
    texts = [licence("react_mit_license"), "Café №1: ÉTÉ 2024 — ﬁn.", None, "", WIKI.read_text()[:3000]]
    batch = pa.RecordBatch.from_pydict({"id": [str(i) for i in range(len(texts))], "text": texts})
    (keys,) = list(dedup_keys(iter([batch]), hasher, with_signature=True))
    plain = [text or "" for text in texts]
    signatures = hasher.signatures(plain)
    assert keys.column("text_hash").to_pylist() == [text_hash(normalize_for_dedup(t)) for t in plain]
    assert keys.column("signature").to_pylist() == signatures.view(np.int64).tolist()
    assert keys.column("band_keys").to_pylist() == hasher.band_keys(signatures).view(np.int64).tolist()
