"""Figures shared by the benchmarks (they print figures, assert nothing)."""


def pct(values, p):
    """The p-th percentile (0 to 100) of @values, nearest rank."""
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]
