"""The demo ring's transforms as NumPy functions: examples/python-stage/ring.json runs ts1 and
ts2 as `transform` (the TypeScript stages' halfmean); `halffirst` is the C stage's. Both give
the built-ins' bits: same operations, same order."""
import numpy as np


def transform(x, out, ctx):
    """halfmean: y[j] = sum(x) / len(x) / 2 + (rank * len(out) + j)."""
    k = len(out)
    # cumsum adds left to right, as the TypeScript and C stages do; np.sum(x) adds pairwise,
    # which rounds differently in the last bits.
    half_mean = np.cumsum(x)[-1] / len(x) / 2
    np.add(np.arange(ctx.rank * k, (ctx.rank + 1) * k, dtype=np.float64), half_mean, out=out)


def halffirst(x, out, ctx):
    """y[j] = x[0] / 2 + (rank * len(out) + j)."""
    k = len(out)
    np.add(np.arange(ctx.rank * k, (ctx.rank + 1) * k, dtype=np.float64), x[0] / 2, out=out)
