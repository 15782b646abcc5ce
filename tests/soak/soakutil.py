"""What the soaks (tests/soak/soak.py, tests/bench/soak_months.py) measure
the same way: a process's resident memory and percentiles of samples."""


def rss_parts_kib(pid):
    """VmRSS and its parts (RssAnon: the heap; RssFile: mapped files;
    RssShmem: shared memory, SQLite's WAL index among it) of process pid
    in KiB, as a dict keyed by those names; empty when it is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(line.split()[1])
    except OSError:
        return {}
    return out


def rss_kib(pid):
    """VmRSS of process pid in KiB, or None when it is gone."""
    return rss_parts_kib(pid).get("VmRSS")


def pct(xs, p):
    """The p-th percentile of xs (nearest rank), None for no samples."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]
