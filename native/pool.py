"""Run kernel calls on worker threads (the kernels release the GIL) and
report their summed progress from the calling thread."""
from __future__ import annotations

import concurrent.futures as cf


def run(jobs, threads: int, report=None, interval: float = 0.5) -> list:
    """Call each ``job(tick)`` on one of ``threads`` threads and return their
    results in order. A job calls ``tick(k)`` when it has done k more units
    of work; ``report(units done by all jobs)`` is called from this thread
    every ``interval`` seconds and whenever a job ends (a progress line must come
    from one thread). With ``threads == 1`` the jobs run here, one by
    one, and every tick reports.
    The first job to raise stops the rest and its exception propagates."""
    done = [0] * len(jobs)  # each job adds to its own slot only
    here = threads <= 1 and report is not None

    def ticker(i):
        def tick(k):
            done[i] += k
            if here:
                report(sum(done))
        return tick

    if threads <= 1:
        return [job(ticker(i)) for i, job in enumerate(jobs)]
    with cf.ThreadPoolExecutor(threads) as ex:
        futures = [ex.submit(job, ticker(i)) for i, job in enumerate(jobs)]
        pending = set(futures)
        try:
            while pending:
                finished, pending = cf.wait(pending, interval, cf.FIRST_COMPLETED)
                for f in finished:
                    f.result()
                if report is not None:
                    report(sum(done))
        finally:
            for f in pending:
                f.cancel()
    return [f.result() for f in futures]
