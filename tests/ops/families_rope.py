"""The edge families of the rotary-embedding record: each layout forced, and positions past 1000 (angles of
thousands of radians, where cos and sin tables computed in float32 are the tables given)."""

PREDICATES = {
    "interleaved": lambda op, c: c.hyper["layout"] == "interleaved",
    "half_split": lambda op, c: c.hyper["layout"] == "half",
    "large_positions": lambda op, c: c.hyper["start"] >= 1000,
}
