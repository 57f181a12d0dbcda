//! Small operating-system helpers: a clock shared by all processes of a run, the kernel's
//! receive timestamps on that clock, the open-file limit, and reading another process's memory
//! and CPU time from `/proc` (Linux).

use std::io;
use std::path::Path;

/// Nanoseconds of `CLOCK_MONOTONIC`. The clock is system-wide, so the publisher (parent
/// process) and the subscribers (worker processes) on one machine read the same time line; it
/// never jumps with NTP or a date change the way wall-clock time can.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds of `CLOCK_REALTIME`.
fn realtime_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_REALTIME always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    debug_assert_eq!(rc, 0);
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// `CLOCK_REALTIME − CLOCK_MONOTONIC` in ns, measured once per process: the kernel stamps
/// received segments with wall-clock time, and the bench's time line is the monotonic clock.
/// Over one run the two clocks drift apart by NTP slewing only (microseconds at most).
static REALTIME_OFFSET_NS: std::sync::LazyLock<i128> = std::sync::LazyLock::new(|| {
    let before = i128::from(now_ns());
    let real = realtime_ns();
    let after = i128::from(now_ns());
    real - (before + after) / 2
});

/// Asks the kernel to stamp each segment received on `fd` with its arrival time
/// (`SO_TIMESTAMPNS`), which [`recv_stamped`] then returns with the data.
pub fn enable_receive_timestamps(fd: std::os::fd::RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a socket descriptor owned by the caller and a c_int option value of the right
    // size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `recv` into `buf`, with the time (monotonic ns, as [`now_ns`]) at which the kernel received
/// the last segment whose bytes were read, when the socket has receive timestamps on
/// ([`enable_receive_timestamps`]).
///
/// The difference from the time the read returned is how long the data waited in the socket
/// for this process to get to it: on a machine shared with the server, the load generator's
/// own lag rather than the server's.
pub fn recv_stamped(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one timestamp message (CMSG_SPACE of a timespec is 32 bytes), 8-byte aligned
    // as a cmsghdr must be.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at one iovec covering `buf` (valid and writable for its length)
    // and at `control` (valid and writable for msg_controllen bytes); both outlive the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: `msg` was filled by recvmsg: CMSG_FIRSTHDR and CMSG_NXTHDR walk the control
    // messages inside `control` (msg_controllen was set to the length the kernel wrote) and
    // return null after the last one; CMSG_DATA of an SCM_TIMESTAMPNS message points at a
    // timespec, read unaligned because the data has no alignment guarantee for it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let real = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
                stamp = u64::try_from(real - *REALTIME_OFFSET_NS).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

/// Raises this process's soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: raising the soft limit up to the hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    Ok(lim.rlim_cur as u64)
}

/// `VmRSS` of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, "VmRSS:")
}

/// `VmHWM` (peak RSS) of a process in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, "VmHWM:")
}

/// Number of threads of a process.
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// User + system CPU time a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' come field 3 (state) onwards: utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let tck = if tck > 0 { tck as f64 } else { 100.0 };
    Some((utime + stime) as f64 / tck)
}

/// Finds the process listening on a local TCP `port`: the listening socket's inode from
/// `/proc/net/tcp{,6}`, then the process holding `socket:[inode]` among its descriptors.
pub fn find_listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(Path::new("/proc").join(name).join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| target.as_os_str() == w.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Inodes of sockets in state LISTEN (0A) on `port` in one `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let Some((_, p)) = f[1].rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(p, 16).ok() == Some(port)
            && let Ok(inode) = f[9].parse::<u64>()
            && inode != 0
        {
            out.push(inode);
        }
    }
    out
}

/// The 1-minute load average (other work on the machine skews a benchmark).
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU pressure (Linux PSI): the share of the last 10 s in which some runnable task waited
/// for a CPU, in percent. High values mean the run competed with other work for the CPUs.
pub fn cpu_pressure() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    parse_pressure(&text)
}

fn parse_pressure(text: &str) -> Option<f64> {
    let some = text.lines().find(|l| l.starts_with("some "))?;
    some.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// System-wide `TcpExt` `ListenOverflows` + `ListenDrops`: connection attempts dropped because
/// a listener's accept queue was full (the client retries the SYN after ~1 s).
pub fn listen_drops() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    parse_listen_drops(&text)
}

fn parse_listen_drops(text: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |key: &str| -> Option<u64> {
        values
            .get(names.iter().position(|n| *n == key)?)?
            .parse()
            .ok()
    };
    Some(get("ListenOverflows")? + get("ListenDrops")?)
}

/// `/proc/sys/net/ipv4/ip_local_port_range` as (low, high).
pub fn local_port_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<u32>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_tables() {
        let status = "Name:\therald\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(20480));
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 8000), vec![12345]);
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 3 4\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_listen_drops(netstat), Some(7));
        let psi = "some avg10=91.48 avg60=85.09 avg300=79.42 total=1844546211\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_pressure(psi), Some(91.48));
        assert!(listening_inodes(table, 8001).is_empty());
    }

    #[test]
    fn clock_moves_forward_and_self_is_measurable() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_seconds(me).is_some());
    }

    #[test]
    fn receive_timestamps_say_when_the_bytes_arrived_not_when_they_were_read() {
        use std::io::Write as _;
        use std::os::fd::AsRawFd as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let receiver = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut sender, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];

        // Without the option, no stamp.
        sender.write_all(b"a").unwrap();
        let (n, stamp) = recv_stamped(receiver.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, stamp), (1, None));

        enable_receive_timestamps(receiver.as_raw_fd()).unwrap();
        // The first socket to ask turns timestamping on for the whole system, which the kernel
        // does asynchronously: until then segments arrive unstamped.
        for _ in 0..200 {
            sender.write_all(b"w").unwrap();
            if recv_stamped(receiver.as_raw_fd(), &mut buf)
                .unwrap()
                .1
                .is_some()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let sent = now_ns();
        sender.write_all(b"hello").unwrap();
        // The bytes wait in the socket for 50 ms before they are read.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (n, stamp) = recv_stamped(receiver.as_raw_fd(), &mut buf).unwrap();
        let read = now_ns();
        assert_eq!(&buf[..n], b"hello");
        let arrived = stamp.expect("a timestamp once the option is on");
        // Allow for the realtime/monotonic offset measured once (microseconds).
        assert!(
            arrived + 1_000_000 >= sent,
            "arrived {arrived} before it was sent {sent}"
        );
        assert!(
            read - arrived >= 45_000_000,
            "the stamp is the read time, not the arrival: waited {} ns",
            read - arrived
        );
    }
}
