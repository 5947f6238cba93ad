"""What machine a measurement was taken on: CPU model, cores, OS, Python (for every benchmark output)."""

import os
import platform


def cpu_model():
    """The CPU's marketing name from /proc/cpuinfo (Linux, Pi included), else platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                # x86 says "model name"; a Raspberry Pi says "Model" (the board) — either names it.
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores():
    """CPU cores this process may use (respects affinity and container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info():
    """A dict naming the machine: cpu, cores, os, arch, python."""
    return {
        "cpu": cpu_model(),
        "cores": cores(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python": platform.python_version(),
    }


def machine_line():
    """One line for report headers, e.g. 'Intel Xeon … · 2 cores · Linux 6.1 x86_64 · Python 3.11.7'."""
    m = machine_info()
    return f"{m['cpu']} · {m['cores']} cores · {m['os']} {m['arch']} · Python {m['python']}"
