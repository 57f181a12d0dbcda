#!/usr/bin/env python3
"""Where a fan-out's latency is spent inside the server: its write schedule, traced with perf.

    bench/write-schedule.py --pid $(pgrep -x herald) --seconds 5

Run it as root while a single-channel fan-out (`herald-bench fanout`, API publisher) is in its
steady state. It records two system calls of the server for `--seconds`, with perf's syscall
tracepoints (no change to the server, little overhead):

  * `sendmsg` (or `sendto`, as tokio writes) on the worker threads: every write to a
    WebSocket connection, with its fd;
  * `writev` on the `herald-http` thread: every HTTP answer, here the answers to the
    publisher's `/api/publish` calls. The server answers after the publication is queued for
    every subscriber, so each answer marks when a publication was ready to be written.

and prints:

  * writes per second, per thread;
  * the gap between two writes to the same connection (how often each connection gets a turn);
  * from each publication's answer to each connection's next write: the part of the delivery
    latency that the server's write schedule adds, measured inside the server. The bench's
    figure adds the publish request before it and the client's own reading after it.

It assumes every connection written in the window subscribes to the published channel (the
standard fan-out scenarios). Needs `perf` (Debian: linux-perf) with syscall tracepoints.
"""

import argparse
import bisect
import collections
import os
import subprocess
import sys
import tempfile


def percentiles(values, points=(0.5, 0.9, 0.99)):
    """`values` sorted; returns the nearest-rank percentile for each point and the maximum."""
    if not values:
        return "no samples"
    n = len(values)
    parts = [f"p{round(p * 100, 1):g} {values[min(n - 1, int(p * n))]:.1f}" for p in points]
    parts.append(f"max {values[-1]:.1f}")
    return "  ".join(parts)


def record(pid, seconds, data):
    cmd = [
        "perf", "record", "-q", "-o", data,
        "-e", "syscalls:sys_enter_sendmsg",
        "-e", "syscalls:sys_enter_sendto",
        "-e", "syscalls:sys_enter_writev",
        "-p", str(pid), "--", "sleep", str(seconds),
    ]
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    except FileNotFoundError:
        sys.exit("write-schedule: perf is not installed (Debian: apt-get install linux-perf)")
    except subprocess.CalledProcessError as e:
        sys.exit(f"write-schedule: perf record failed ({e}); run as root, and check that "
                 "`perf list syscalls:sys_enter_sendmsg` shows the tracepoint")


def perf_script(data):
    """The recording as `perf script` text: one event per line."""
    return subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,tid,time,event,trace"],
        check=True, capture_output=True, text=True,
    ).stdout


def parse(text):
    """Yields (thread name, tid, seconds, event, fd) from `perf script` text."""
    for line in text.splitlines():
        # "tokio-rt-worker 14814 663.248957: syscalls:sys_enter_sendmsg: fd: 0x00000185, ..."
        head, sep, trace = line.partition(": fd: ")
        if not sep:
            continue
        fields = head.split()
        if len(fields) < 4:
            continue
        comm, tid, time, event = " ".join(fields[:-3]), fields[-3], fields[-2], fields[-1]
        yield comm, tid, float(time.rstrip(":")), event, int(trace.split(",")[0], 16)


class Schedule:
    """What the events say: writes per thread, the gaps between writes to one connection, and
    the waits from each publication's answer to each connection's next write (both in ms,
    sorted)."""

    def __init__(self, events):
        answers = []
        writes = collections.defaultdict(list)
        self.per_thread = collections.Counter()
        for comm, tid, time, event, fd in events:
            if event.endswith("sys_enter_writev") and comm == "herald-http":
                answers.append(time)
            elif event.endswith(("sys_enter_sendmsg", "sys_enter_sendto")):
                writes[fd].append(time)
                self.per_thread[f"{comm}-{tid}"] += 1
        self.connections = len(writes)
        self.answers = len(answers)
        self.gaps = sorted(
            (b - a) * 1e3 for times in writes.values() for a, b in zip(times, times[1:])
        )
        # Leave out answers too close to the end: some connections' next write is not recorded.
        last = max((times[-1] for times in writes.values()), default=0.0)
        horizon = last - (self.gaps[-1] / 1e3 if self.gaps else 0.0)
        self.waits = []
        for times in writes.values():
            for answered in answers:
                if answered > horizon:
                    break
                i = bisect.bisect_right(times, answered)
                if i < len(times):
                    self.waits.append((times[i] - answered) * 1e3)
        self.waits.sort()
        # How evenly the writes are spread in time: writes per 10 ms, over the whole window.
        every = sorted(t for times in writes.values() for t in times)
        self.per_10ms = []
        if every:
            buckets = collections.Counter(int((t - every[0]) * 100) for t in every)
            self.per_10ms = sorted(buckets.get(b, 0) for b in range(max(buckets) + 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pid", type=int, required=True, help="the herald server process")
    ap.add_argument("--seconds", type=float, default=5.0, help="how long to record")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        record(args.pid, args.seconds, data)
        schedule = Schedule(parse(perf_script(data)))

    total = sum(schedule.per_thread.values())
    if not total:
        sys.exit("write-schedule: no writes recorded; is a fan-out running against this server?")
    print(f"{total / args.seconds:,.0f} writes/s to {schedule.connections:,} connections "
          f"({total / schedule.connections / args.seconds:.1f} per connection per second)")
    for thread, count in sorted(schedule.per_thread.items()):
        print(f"  {thread}: {count / args.seconds:,.0f}/s")
    print(f"gap between writes to one connection (ms): {percentiles(schedule.gaps)}")
    spread = schedule.per_10ms
    if spread:
        print(f"writes per 10 ms (how bursty): mean {sum(spread) / len(spread):,.0f}  "
              f"{percentiles(spread, (0.1, 0.5, 0.9))}")
    print(f"{schedule.answers} publications answered; from the answer to each connection's "
          f"next write (ms): {percentiles(schedule.waits)}")


if __name__ == "__main__":
    main()
