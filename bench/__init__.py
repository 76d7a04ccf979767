"""The benchmark harness behind ``make bench`` (see docs/benchmarks.md).

Every figure runs on the embedded broker in one process tree, with the same stream of
20-feature events and the same model spec, so that riverops' figures can be read as
ratios to the in-process River limit and to a naive faust-streaming pipeline measured in
the same run: on a shared 2-core machine the absolute numbers move, the ratios much less.
"""
