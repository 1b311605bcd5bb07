//! A user-space link emulator for the fetch benchmark (`bench/fetch.sh`).
//!
//! This kernel has no netem, so a slow, high-latency link is modelled here: a
//! TCP proxy on loopback that forwards every connection to a target and, per
//! direction, passes the bytes through a model of a real link:
//!
//! * a serialising bottleneck of RATE bits/s with a FIFO queue in front of it
//!   (a chunk starts going out when it has arrived and the previous one has
//!   left, and takes `len × 8 / RATE` to leave);
//! * then a propagation delay of RTT/2: a delay line, so that every chunk is
//!   released at its own time and throughput is not cut by the latency.
//!
//! The queue in front of the bottleneck holds `--queue-bytes` plus the
//! bandwidth-delay product; when it is full the proxy stops reading and the
//! sender feels TCP back-pressure, as behind a real modem's buffer.
//!
//! It counts the payload bytes each way (TCP/IP headers and ACKs are not
//! modelled: both sides talk to the proxy over loopback). On each connection's
//! close it prints a line, and it keeps the totals in `--stats FILE`
//! (`connections`, `up_bytes`, `down_bytes`, one `key value` a line), written
//! again when SIGTERM or SIGINT ends the proxy, live connections included.
//!
//! ```text
//! cargo run --release --example link_proxy -- --listen 127.0.0.1:2200 \
//!     --target 127.0.0.1:22 --down-bps 1000000 --up-bps 256000 --rtt-ms 100 \
//!     --stats /tmp/link.stats
//! ```
//!
//! "Up" is client → target, "down" is target → client.
//!
//! `--cut-down-after BYTES` drops the link once that many bytes have come
//! out of it towards the client: a cut at a known offset, for the resume
//! benchmark (`bench/resume.sh`).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

/// Largest chunk put on the emulated link at once: one Ethernet-sized TCP
/// segment, so that serialisation is paced like packets, not like reads.
const SEGMENT: usize = 1448;

/// Chunks due within this much of the first one are written together, to
/// save system calls without changing the timing measurably.
const COALESCE: Duration = Duration::from_micros(300);

#[derive(Parser)]
#[command(about = "A delay/rate TCP proxy that emulates a slow link")]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Address every connection is forwarded to.
    #[arg(long)]
    target: SocketAddr,
    /// Rate from the target to the client, bits/s.
    #[arg(long)]
    down_bps: u64,
    /// Rate from the client to the target, bits/s.
    #[arg(long)]
    up_bps: u64,
    /// Round-trip time added by the link, ms (half each way).
    #[arg(long, default_value_t = 0.0)]
    rtt_ms: f64,
    /// Bytes the queue before each bottleneck holds beyond the
    /// bandwidth-delay product.
    #[arg(long, default_value_t = 64 * 1024)]
    queue_bytes: usize,
    /// File the byte totals are written to.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Cut the link once this many bytes have come out of it towards the
    /// client (all connections together): the connection that reaches it
    /// gets exactly that many, then both its sockets are shut down, as a
    /// dropped link would; later connections are cut at once.
    #[arg(long)]
    cut_down_after: Option<u64>,
}

/// One direction's link parameters.
#[derive(Clone, Copy)]
struct LinkSpec {
    bits_per_second: u64,
    one_way_delay: Duration,
    queue_limit: usize,
}

impl LinkSpec {
    fn new(bits_per_second: u64, rtt_ms: f64, queue_bytes: usize) -> LinkSpec {
        let one_way_delay = Duration::from_secs_f64(rtt_ms / 2000.0);
        let in_flight = (bits_per_second as f64 / 8.0 * one_way_delay.as_secs_f64()) as usize;
        LinkSpec {
            bits_per_second,
            one_way_delay,
            queue_limit: queue_bytes + in_flight,
        }
    }

    fn serialisation(&self, len: usize) -> Duration {
        Duration::from_secs_f64(len as f64 * 8.0 / self.bits_per_second as f64)
    }
}

/// The link's timing state: when the bottleneck is next free.
struct LinkClock {
    spec: LinkSpec,
    free_at: Instant,
}

impl LinkClock {
    /// When a chunk of `len` bytes that reached the queue at `arrival` comes
    /// out at the far end, if it were sent next.
    fn delivery(&self, arrival: Instant, len: usize) -> (Instant, Instant) {
        let leaves = arrival.max(self.free_at) + self.spec.serialisation(len);
        (leaves, leaves + self.spec.one_way_delay)
    }

    /// Puts a chunk on the link; returns when it comes out at the far end.
    fn send(&mut self, arrival: Instant, len: usize) -> Instant {
        let (leaves, due) = self.delivery(arrival, len);
        self.free_at = leaves;
        due
    }
}

/// The chunks read from one side, waiting for their turn on the link.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
    closed: bool,
}

/// A queue shared by a direction's reader and writer threads.
#[derive(Default)]
struct SharedQueue {
    state: Mutex<Queue>,
    changed: Condvar,
}

/// Byte counters for the whole proxy's lifetime.
#[derive(Default)]
struct Totals {
    connections: AtomicU64,
    up_bytes: AtomicU64,
    down_bytes: AtomicU64,
    /// Bytes the link still delivers towards the client before it is cut
    /// (`--cut-down-after`; `u64::MAX`: never).
    down_left: AtomicU64,
}

/// How much of a write of `len` bytes goes out before the cut, with
/// `left` bytes to go; takes it from `left`. `None`: all of it.
fn before_cut(left: &AtomicU64, len: usize) -> Option<usize> {
    let mut now = left.load(Ordering::SeqCst);
    loop {
        let take = now.min(len as u64);
        match left.compare_exchange(now, now - take, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) if take == len as u64 => return None,
            Ok(_) => return Some(take as usize),
            Err(actual) => now = actual,
        }
    }
}

impl Totals {
    fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "connections {}\nup_bytes {}\ndown_bytes {}\n",
            self.connections.load(Ordering::SeqCst),
            self.up_bytes.load(Ordering::SeqCst),
            self.down_bytes.load(Ordering::SeqCst)
        );
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }
}

/// Reads from `from` into the queue, counting bytes, until EOF or error.
fn read_side(mut from: TcpStream, queue: &SharedQueue, spec: LinkSpec, counters: [&AtomicU64; 2]) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let arrival = Instant::now();
        for c in counters {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
        let mut q = queue.state.lock().unwrap();
        while q.bytes >= spec.queue_limit && !q.closed {
            q = queue.changed.wait(q).unwrap();
        }
        if q.closed {
            return;
        }
        for segment in buf[..n].chunks(SEGMENT) {
            q.chunks.push_back((arrival, segment.to_vec()));
        }
        q.bytes += n;
        queue.changed.notify_all();
    }
    let mut q = queue.state.lock().unwrap();
    q.closed = true;
    queue.changed.notify_all();
}

/// Takes chunks off the queue and writes each to `to` when the link would
/// deliver it; half-closes `to` once the queue is drained and closed.
fn write_side(mut to: TcpStream, queue: &SharedQueue, spec: LinkSpec, cut: Option<&AtomicU64>) {
    let mut clock = LinkClock {
        spec,
        free_at: Instant::now(),
    };
    let mut out = Vec::new();
    loop {
        let mut q = queue.state.lock().unwrap();
        while q.chunks.is_empty() && !q.closed {
            q = queue.changed.wait(q).unwrap();
        }
        let Some((arrival, chunk)) = q.chunks.pop_front() else {
            break;
        };
        q.bytes -= chunk.len();
        queue.changed.notify_all();
        drop(q);
        let due = clock.send(arrival, chunk.len());
        out.clear();
        out.extend_from_slice(&chunk);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        // Everything else the link has delivered by now goes in the same write.
        let now = Instant::now() + COALESCE;
        let mut q = queue.state.lock().unwrap();
        while let Some((arrival, chunk)) = q.chunks.front() {
            let (leaves, due) = clock.delivery(*arrival, chunk.len());
            if due > now {
                break;
            }
            clock.free_at = leaves;
            out.extend_from_slice(chunk);
            q.bytes -= chunk.len();
            q.chunks.pop_front();
        }
        queue.changed.notify_all();
        drop(q);
        let cut_here = cut.and_then(|left| before_cut(left, out.len()));
        if let Some(n) = cut_here {
            let _ = to.write_all(&out[..n]);
            println!("link cut after the agreed number of bytes down");
            let _ = std::io::stdout().flush();
        }
        if cut_here.is_some() || to.write_all(&out).is_err() {
            // The receiver is gone: stop both ways, as a dropped link would.
            let _ = to.shutdown(Shutdown::Both);
            let mut q = queue.state.lock().unwrap();
            q.closed = true;
            q.chunks.clear();
            queue.changed.notify_all();
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Runs one proxied connection through two emulated links until both
/// directions are closed, then reports its byte counts.
fn serve(client: TcpStream, args: Arc<Args>, totals: Arc<Totals>, id: u64) {
    let started = Instant::now();
    let server = match TcpStream::connect(args.target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "link_proxy: connection {id}: cannot reach {}: {e}",
                args.target
            );
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let up = LinkSpec::new(args.up_bps, args.rtt_ms, args.queue_bytes);
    let down = LinkSpec::new(args.down_bps, args.rtt_ms, args.queue_bytes);
    let up_queue = SharedQueue::default();
    let down_queue = SharedQueue::default();
    let conn_up = AtomicU64::new(0);
    let conn_down = AtomicU64::new(0);
    let streams = (|| -> std::io::Result<_> {
        Ok((
            client.try_clone()?,
            client.try_clone()?,
            server.try_clone()?,
            server,
        ))
    })();
    let Ok((client_reader, client_writer, server_reader, server_writer)) = streams else {
        eprintln!("link_proxy: connection {id}: cannot clone sockets");
        return;
    };
    thread::scope(|s| {
        s.spawn(|| read_side(client_reader, &up_queue, up, [&conn_up, &totals.up_bytes]));
        s.spawn(|| write_side(server_writer, &up_queue, up, None));
        s.spawn(|| {
            read_side(
                server_reader,
                &down_queue,
                down,
                [&conn_down, &totals.down_bytes],
            )
        });
        s.spawn(|| write_side(client_writer, &down_queue, down, Some(&totals.down_left)));
    });
    drop(client);
    println!(
        "connection {id} closed after {:.3} s: up {} bytes, down {} bytes",
        started.elapsed().as_secs_f64(),
        conn_up.load(Ordering::SeqCst),
        conn_down.load(Ordering::SeqCst)
    );
    if let Some(path) = &args.stats {
        if let Err(e) = totals.write(path) {
            eprintln!("link_proxy: cannot write {}: {e}", path.display());
        }
    }
}

/// Blocks SIGTERM and SIGINT in every thread and returns the set, so that one
/// thread can take them with `sigwait`.
fn block_exit_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn main() -> std::io::Result<()> {
    let args = Arc::new(Args::parse());
    if args.down_bps == 0 || args.up_bps == 0 || args.rtt_ms < 0.0 {
        eprintln!("link_proxy: rates must be positive and the RTT not negative");
        std::process::exit(2);
    }
    let signals = block_exit_signals();
    let totals = Arc::new(Totals::default());
    totals
        .down_left
        .store(args.cut_down_after.unwrap_or(u64::MAX), Ordering::SeqCst);
    let listener = TcpListener::bind(args.listen)?;
    if let Some(path) = &args.stats {
        totals.write(path)?;
    }
    {
        let (args, totals) = (args.clone(), totals.clone());
        thread::spawn(move || {
            let mut signal = 0;
            // SAFETY: `signals` is an initialised set; `signal` outlives the call.
            unsafe { libc::sigwait(&signals, &mut signal) };
            if let Some(path) = &args.stats {
                let _ = totals.write(path);
            }
            println!(
                "totals: {} connections, up {} bytes, down {} bytes",
                totals.connections.load(Ordering::SeqCst),
                totals.up_bytes.load(Ordering::SeqCst),
                totals.down_bytes.load(Ordering::SeqCst)
            );
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        });
    }
    println!("listening on {}", listener.local_addr()?);
    let _ = std::io::stdout().flush();
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let id = totals.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let (args, totals) = (args.clone(), totals.clone());
        thread::spawn(move || serve(client, args, totals, id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modem_down() -> LinkSpec {
        LinkSpec::new(1_000_000, 100.0, 64 * 1024)
    }

    #[test]
    fn the_cut_lets_exactly_the_agreed_bytes_through() {
        let left = AtomicU64::new(10_000);
        assert_eq!(before_cut(&left, 6_000), None);
        assert_eq!(before_cut(&left, 6_000), Some(4_000));
        assert_eq!(before_cut(&left, 1), Some(0));
        let never = AtomicU64::new(u64::MAX);
        assert_eq!(before_cut(&never, 1 << 20), None);
    }

    #[test]
    fn a_segment_takes_its_size_at_the_rate() {
        let t = modem_down().serialisation(SEGMENT);
        assert_eq!(t, Duration::from_secs_f64(1448.0 * 8.0 / 1e6));
    }

    #[test]
    fn the_queue_holds_the_bandwidth_delay_product_on_top() {
        // 1 Mbit/s × 50 ms one way = 6,250 bytes in flight.
        assert_eq!(modem_down().queue_limit, 64 * 1024 + 6_250);
    }

    #[test]
    fn back_to_back_segments_leave_at_the_link_rate_then_travel_half_the_rtt() {
        let t0 = Instant::now();
        let spec = modem_down();
        let mut clock = LinkClock { spec, free_at: t0 };
        for k in 1..=10u32 {
            let due = clock.send(t0, SEGMENT);
            assert_eq!(
                due,
                t0 + spec.serialisation(SEGMENT) * k + spec.one_way_delay
            );
        }
    }

    #[test]
    fn an_idle_link_saves_no_credit_for_a_burst() {
        let t0 = Instant::now();
        let spec = modem_down();
        let mut clock = LinkClock { spec, free_at: t0 };
        clock.send(t0, SEGMENT);
        let later = t0 + Duration::from_secs(5);
        let first = clock.send(later, SEGMENT);
        let second = clock.send(later, SEGMENT);
        assert_eq!(
            first,
            later + spec.serialisation(SEGMENT) + spec.one_way_delay
        );
        assert_eq!(second - first, spec.serialisation(SEGMENT));
    }

    #[test]
    fn peeking_does_not_move_the_clock() {
        let t0 = Instant::now();
        let mut clock = LinkClock {
            spec: modem_down(),
            free_at: t0,
        };
        let (_, peeked) = clock.delivery(t0, 100);
        assert_eq!(clock.send(t0, 100), peeked);
    }
}
