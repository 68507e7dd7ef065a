"""Analysis side of gapprof: trace loading, step attribution, floor model, kernel and API tables, rendering.

Every module is a set of pure functions over polars frames produced by `readers`.
"""
