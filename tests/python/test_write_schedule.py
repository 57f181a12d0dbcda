"""bench/write-schedule.py: what it reads from a perf trace of the server's system calls.

The trace below is written by hand in `perf script`'s format: two connections (fds 7 and 8)
written by two worker threads, and two publications answered by the HTTP thread.
"""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "write-schedule.py"
spec = importlib.util.spec_from_file_location("write_schedule", SCRIPT)
write_schedule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(write_schedule)

SEND = "syscalls:sys_enter_sendmsg: fd: 0x{:08x}, msg: 0x7f00, flags: 0x00004000"
ANSWER = "syscalls:sys_enter_writev: fd: 0x00000005, vec: 0x7f00, vlen: 0x00000002"


def line(comm, tid, seconds, trace):
    return f" {comm} {tid} {seconds:12.6f}:  {trace}"


TRACE = "\n".join([
    line("tokio-rt-worker", 11, 100.000, SEND.format(7)),
    line("tokio-rt-worker", 12, 100.010, SEND.format(8)),
    line("herald-http", 13, 100.015, ANSWER),   # waits 45 ms for fd 7, 35 ms for fd 8
    line("tokio-rt-worker", 11, 100.050, SEND.format(8)),
    line("tokio-rt-worker", 11, 100.060, SEND.format(7)),
    line("herald-http", 13, 100.070, ANSWER),   # too near the end to count (see below)
    line("tokio-rt-worker", 12, 100.100, SEND.format(8)),
    line("tokio-rt-worker", 12, 100.110, SEND.format(7)),
    "a line that is not an event",
])


def test_parses_perf_script_lines():
    events = list(write_schedule.parse(TRACE))
    assert len(events) == 8
    assert events[0] == ("tokio-rt-worker", "11", 100.0, "syscalls:sys_enter_sendmsg", 7)
    assert events[2] == ("herald-http", "13", 100.015, "syscalls:sys_enter_writev", 5)


def test_measures_gaps_and_waits_per_connection():
    schedule = write_schedule.Schedule(write_schedule.parse(TRACE))
    assert schedule.connections == 2
    assert schedule.answers == 2
    assert dict(schedule.per_thread) == {"tokio-rt-worker-11": 3, "tokio-rt-worker-12": 3}
    # fd 7: 100.000 → 100.060 → 100.110; fd 8: 100.010 → 100.050 → 100.100
    assert [round(g, 3) for g in schedule.gaps] == [40.0, 50.0, 50.0, 60.0]
    # The second answer (100.070) is past the horizon (last write 100.110 − longest gap 60 ms),
    # so only the first answer's waits count: its next writes to fd 8 and fd 7.
    assert [round(w, 3) for w in schedule.waits] == [35.0, 45.0]


def test_percentiles_name_each_point_and_the_maximum():
    assert write_schedule.percentiles([1.0, 2.0, 3.0, 4.0]) == "p50 3.0  p90 4.0  p99 4.0  max 4.0"
    assert write_schedule.percentiles([]) == "no samples"
