"""Interleaved latency rounds (A B A B …), shared by the benchmark scripts: a busy machine hits every job alike."""

import statistics
import time


def interleaved_rounds(jobs, rounds, per_round, warmup=5):
    """Times each job `per_round` times per round, cycling through the jobs every round.

    Args:
      jobs: {key: zero-argument callable}.
      rounds: how many rounds.
      per_round: timed calls of each job per round.
      warmup: untimed calls of each job first (weight packing, first-touch allocation).

    Returns:
      {key: [median ms of each round]}: summarise with statistics.median, min and max (the spread).
    """
    for job in jobs.values():
        for _ in range(warmup):
            job()
    medians = {key: [] for key in jobs}
    for _ in range(rounds):
        for key, job in jobs.items():
            times = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                job()
                times.append((time.perf_counter() - t0) * 1000)
            medians[key].append(statistics.median(times))
    return medians
