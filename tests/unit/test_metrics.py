"""Buffered metrics: what they add at a flush equals what observing directly gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from app.core.metrics import BufferedCounter, BufferedHistogram, flush_buffered

BUCKETS = (0.0005, 0.001, 0.005, 0.1, 1.0)


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), max_size=50))
def test_a_buffered_histogram_matches_direct_observations(values: list[float]) -> None:
    registry = CollectorRegistry()
    direct = Histogram("direct_seconds", "d", ["outcome"], buckets=BUCKETS, registry=registry)
    buffered = Histogram("buffered_seconds", "b", ["outcome"], buckets=BUCKETS, registry=registry)
    recorder = BufferedHistogram(buffered.labels("x"))
    child = direct.labels("x")
    for value in values:
        child.observe(value)
        recorder.observe(value)
    flush_buffered()
    flush_buffered()  # a second flush adds nothing

    def samples(name: str) -> dict[str, float]:
        found = {}
        for metric in registry.collect():
            for sample in metric.samples:
                if sample.name.startswith(name) and not sample.name.endswith("_created"):
                    suffix = sample.name[len(name) :]
                    found[suffix + str(sorted(sample.labels.items()))] = sample.value
        return found

    direct_samples, buffered_samples = samples("direct_seconds"), samples("buffered_seconds")
    assert direct_samples.keys() == buffered_samples.keys()
    for key, value in direct_samples.items():
        assert abs(buffered_samples[key] - value) < 1e-9, key


def test_a_buffered_counter_adds_its_count_at_a_flush() -> None:
    registry = CollectorRegistry()
    counter = Counter("lookups", "l", ["result"], registry=registry)
    hits = BufferedCounter(counter.labels("hit"))
    for _ in range(5):
        hits.inc()
    assert b'lookups_total{result="hit"} 0.0' in generate_latest(registry)
    flush_buffered()
    assert b'lookups_total{result="hit"} 5.0' in generate_latest(registry)
