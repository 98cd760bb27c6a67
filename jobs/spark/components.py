"""Connected components of an edge list in Spark: alternating large-star / small-star rounds
(Kiveris et al., 2014, "Connected Components in MapReduce and Beyond") until the edge set stops
changing. Each node ends linked to the smallest node of its component; the rounds are logarithmic in
the graph's diameter and each is a few shuffles, so a component of any size stays cheap.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def _large_star(edges: DataFrame) -> DataFrame:
    """Link every neighbour larger than a node to the smallest node of its neighbourhood."""
    both = edges.select(F.col("a").alias("u"), F.col("b").alias("v")).unionByName(
        edges.select(F.col("b").alias("u"), F.col("a").alias("v"))
    )
    smallest = Window.partitionBy("u")
    linked = both.withColumn("m", F.least(F.col("u"), F.min("v").over(smallest)))
    return (
        linked.where(F.col("v") > F.col("u")).select(F.col("v").alias("a"), F.col("m").alias("b")).distinct()
    )


def _small_star(edges: DataFrame) -> DataFrame:
    """Link every node and its smaller neighbours to the smallest of them."""
    down = edges.select(F.greatest("a", "b").alias("u"), F.least("a", "b").alias("v"))
    linked = down.withColumn("m", F.min("v").over(Window.partitionBy("u")))
    out = linked.select(F.col("v").alias("a"), F.col("m").alias("b")).unionByName(
        linked.select(F.col("u").alias("a"), F.col("m").alias("b"))
    )
    return out.where(F.col("a") != F.col("b")).distinct()


def connected_components(edges: DataFrame, max_rounds: int = 64) -> DataFrame:
    """(id, component) for every node on an (a, b) edge; component = the smallest id of its component."""
    current = edges.select("a", "b").localCheckpoint()
    for _ in range(max_rounds):
        following = _small_star(_large_star(current)).localCheckpoint()
        if following.count() == current.count() and following.subtract(current).isEmpty():
            break
        current = following
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    return (
        current.select(F.col("a").alias("id"), F.col("b").alias("component"))
        .unionByName(current.select(F.col("b").alias("id"), F.col("b").alias("component")))
        .distinct()
    )
