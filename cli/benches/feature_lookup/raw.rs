//! A lean open-loop load generator for unary gRPC calls: HTTP/2 frames written and read by one
//! plain thread, with no async runtime and no HTTP/2 library in the way.
//!
//! The load generator runs on the same two cores as the server, so every cycle it spends is taken
//! from the server. On a VM most of a generator's cost is not its code but its sleeps and
//! wake-ups: each one is a timer programmed and an interrupt taken through the hypervisor,
//! 15–25 µs of CPU here. The `h2` generator ([`crate::load::open_loop`]) wakes for every
//! request it sends and every answer that arrives, on top of a tokio task per request and `h2`'s
//! bookkeeping. This one, like `wrk2`, wakes on a clock instead:
//!
//! - every request message is encoded before the clock starts;
//! - the header block is the same for every request: literal fields without indexing (RFC 7541
//!   §6.2.2), so it is encoded once and the server's HPACK tables never need to be read;
//! - one thread (the caller's) wakes at most once per `pace` (`--pace-us`); at each wake it
//!   reads what has arrived on every connection, times the requests whose streams ended, and
//!   sends every request due by then, with one write per connection.
//!
//! So an answer is timed up to `pace` after it arrived, and a request sent up to `pace` after its
//! time: both count against the server in the latency, which runs from the request's scheduled
//! time, as in [`crate::load::open_loop`] (no coordinated omission); the send lag is reported
//! apart.
//!
//! An answer is right when its stream ends with exactly one uncompressed gRPC message that the
//! target's [`GrpcCall::verify`] accepts. The answer's headers and trailers are not decoded: a
//! gRPC error is a trailers-only answer, which has no message and so fails. Every target's first
//! call is made and checked in full by the generated clients before any timing.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::load::{FINE_STEP, MAX_IN_FLIGHT, REQUEST_TIMEOUT, Slots, Tally};
use crate::targets::{GrpcCall, Outcome};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
/// Frame flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
/// Settings (RFC 9113 §6.5.2).
const SETTINGS_ENABLE_PUSH: u16 = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
/// The largest flow-control window, and the one a connection starts with.
const MAX_WINDOW: u32 = (1 << 31) - 1;
const INITIAL_WINDOW: u32 = 65_535;
/// The largest frame payload a peer accepts until it says otherwise.
const INITIAL_MAX_FRAME: u32 = 16_384;
/// Bytes received on a connection after which its window is topped up again. Each stream's
/// window is [`MAX_WINDOW`], more than any answer here.
const WINDOW_REFILL: u32 = 1 << 24;
/// The most one `read` takes.
const READ_BUFFER: usize = 256 * 1024;

/// Sends `rate` calls/s of `call` for `seconds` over `connections` new HTTP/2 connections
/// (request `i` on connection `i % connections`), waking at most once per `pace`, reads the
/// answers, and returns the tally. Request `i` is `call.message(seed + i)`. The connections are
/// closed before it returns.
pub(crate) fn open_loop(
    call: &dyn GrpcCall,
    (connections, pace): (usize, Duration),
    rate: f64,
    seconds: f64,
    seed: u64,
) -> Result<Tally> {
    let count = ((rate * seconds).ceil() as usize).max(1);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let bodies = Bodies::encode(call, count, seed)?;
    let block = header_block(call);
    let addr = call.unary().addr;
    let mut conns = (0..connections)
        .map(|_| Connection::open(addr))
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("HTTP/2 connections to {addr}"))?;
    let slots = Slots::new(count);
    let start = Instant::now() + Duration::from_millis(20);
    let run = Run { call, slots: &slots, start, interval, connections, count, pace };
    let sent = run.send(&mut conns, &bodies, &block);
    let drain_until = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(5);
    while conns.iter().any(|c| c.open > 0 && c.failure.is_none()) && Instant::now() < drain_until {
        std::thread::sleep(pace);
        run.receive(&mut conns);
    }
    Ok(slots.tally(sent, count, seconds))
}

/// Every request's message, encoded up front with its gRPC length prefix.
struct Bodies {
    bytes: Vec<u8>,
    /// Where body `i` starts; body `i` ends where `i + 1` starts.
    starts: Vec<usize>,
}

impl Bodies {
    fn encode(call: &dyn GrpcCall, count: usize, seed: u64) -> Result<Self> {
        let mut bytes = Vec::new();
        let mut starts = Vec::with_capacity(count + 1);
        for i in 0..count {
            let message = call.message(seed.wrapping_add(i as u64));
            starts.push(bytes.len());
            bytes.push(0);
            bytes.extend_from_slice(&u32::try_from(message.len()).context("a request over 4 GiB")?.to_be_bytes());
            bytes.extend_from_slice(&message);
        }
        starts.push(bytes.len());
        Ok(Self { bytes, starts })
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.starts[i]..self.starts[i + 1]]
    }
}

/// The request headers of `call`, HPACK-encoded as literals without indexing (no Huffman), so
/// the block is the same for every request and changes no table.
fn header_block(call: &dyn GrpcCall) -> Vec<u8> {
    let unary = call.unary();
    let authority = unary.addr.to_string();
    // `:method: POST` and `:scheme: http` are entries 3 and 6 of the static table.
    let mut block = vec![0x80 | 3, 0x80 | 6];
    // Names from the static table: `:path` 4, `:authority` 1, `content-type` 31, `authorization` 23.
    literal(&mut block, 4, unary.path.as_bytes());
    literal(&mut block, 1, authority.as_bytes());
    literal(&mut block, 31, b"application/grpc");
    new_name(&mut block, b"te", b"trailers");
    literal(&mut block, 23, unary.auth.as_encoded_bytes());
    new_name(&mut block, b"x-client-id", unary.client_id.as_encoded_bytes());
    block
}

/// A literal header field without indexing whose name is entry `index` of the static table.
fn literal(block: &mut Vec<u8>, index: usize, value: &[u8]) {
    integer(block, 0x00, 4, index);
    string(block, value);
}

/// A literal header field without indexing with a new name.
fn new_name(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    block.push(0x00);
    string(block, name);
    string(block, value);
}

/// An HPACK string literal, not Huffman-coded.
fn string(block: &mut Vec<u8>, s: &[u8]) {
    integer(block, 0x00, 7, s.len());
    block.extend_from_slice(s);
}

/// An HPACK integer (RFC 7541 §5.1) with an `n`-bit prefix under the `high` bits.
fn integer(block: &mut Vec<u8>, high: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        block.push(high | value as u8);
        return;
    }
    block.push(high | max as u8);
    value -= max;
    while value >= 128 {
        block.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    block.push(value as u8);
}

/// Appends a frame header.
fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & MAX_WINDOW).to_be_bytes());
}

/// One HTTP/2 connection (non-blocking once open): what the server allows, the bytes read and
/// not yet parsed, the answers being received, and the frames staged to send.
struct Connection {
    tcp: TcpStream,
    /// Bytes read, from the first not yet parsed.
    input: Vec<u8>,
    /// The messages of the streams being answered.
    answers: HashMap<u32, Vec<u8>>,
    /// Bytes received since the connection's window was last topped up.
    received: u32,
    /// Frames staged, written by [`Connection::flush`].
    output: Vec<u8>,
    /// Bytes the server lets us send on the connection.
    window: i64,
    /// Streams sent and not ended.
    open: u32,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS`.
    max_open: u32,
    /// The server's `SETTINGS_INITIAL_WINDOW_SIZE`: no request may be larger.
    stream_window: u32,
    /// The server's `SETTINGS_MAX_FRAME_SIZE`.
    max_frame: u32,
    /// Why the connection failed: nothing more is sent or awaited on it.
    failure: Option<String>,
}

impl Connection {
    /// Connects, sends the preface and our settings (no push, the largest windows), and waits
    /// for the server's settings, which it acknowledges.
    fn open(addr: SocketAddr) -> Result<Self> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_nodelay(true)?;
        let mut conn = Self {
            tcp,
            input: Vec::new(),
            answers: HashMap::new(),
            received: 0,
            output: PREFACE.to_vec(),
            window: i64::from(INITIAL_WINDOW),
            open: 0,
            max_open: u32::MAX,
            stream_window: INITIAL_WINDOW,
            max_frame: INITIAL_MAX_FRAME,
            failure: None,
        };
        frame_header(&mut conn.output, 12, SETTINGS, 0, 0);
        for (id, value) in [(SETTINGS_ENABLE_PUSH, 0), (SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)] {
            conn.output.extend_from_slice(&id.to_be_bytes());
            conn.output.extend_from_slice(&value.to_be_bytes());
        }
        frame_header(&mut conn.output, 4, WINDOW_UPDATE, 0, 0);
        conn.output.extend_from_slice(&(MAX_WINDOW - INITIAL_WINDOW).to_be_bytes());
        conn.flush()?;
        // The server's SETTINGS come first (RFC 9113 §3.4); what follows them stays in `input`.
        conn.tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut scratch = vec![0u8; READ_BUFFER];
        let settings = loop {
            if let Some((kind, flags, _, payload)) = frame_at(&conn.input, 0) {
                ensure!(
                    kind == SETTINGS && flags & ACK == 0,
                    "the server's first frame is of type {kind}, not SETTINGS"
                );
                let settings = conn.input[payload.clone()].to_vec();
                conn.input.drain(..payload.end);
                break settings;
            }
            let n = conn.tcp.read(&mut scratch).context("waiting for the server's SETTINGS")?;
            ensure!(n > 0, "the server closed the connection during the handshake");
            conn.input.extend_from_slice(&scratch[..n]);
        };
        conn.settings(&settings)?;
        conn.flush()?;
        conn.tcp.set_read_timeout(None)?;
        conn.tcp.set_nonblocking(true)?;
        Ok(conn)
    }

    /// Applies the server's SETTINGS and stages their acknowledgement.
    fn settings(&mut self, payload: &[u8]) -> Result<()> {
        ensure!(payload.len().is_multiple_of(6), "a SETTINGS frame of {} bytes", payload.len());
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                SETTINGS_MAX_CONCURRENT_STREAMS => self.max_open = value,
                SETTINGS_INITIAL_WINDOW_SIZE => self.stream_window = value,
                SETTINGS_MAX_FRAME_SIZE => self.max_frame = value,
                _ => {}
            }
        }
        frame_header(&mut self.output, 0, SETTINGS, ACK, 0);
        Ok(())
    }

    /// Reads everything that has arrived into `input`.
    fn fill(&mut self, scratch: &mut [u8]) -> Result<()> {
        loop {
            match self.tcp.read(scratch) {
                Ok(0) => bail!("the server closed the connection"),
                Ok(n) => self.input.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading from the server"),
            }
        }
    }

    /// Writes the staged frames (waiting while the socket's buffer is full).
    fn flush(&mut self) -> Result<()> {
        let mut written = 0;
        let give_up = Instant::now() + REQUEST_TIMEOUT;
        while written < self.output.len() {
            match self.tcp.write(&self.output[written..]) {
                Ok(0) => bail!("the server stopped reading"),
                Ok(n) => written += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    ensure!(Instant::now() < give_up, "the server read nothing for {REQUEST_TIMEOUT:?}");
                    std::thread::sleep(FINE_STEP);
                }
                Err(e) => return Err(e).context("writing to the server"),
            }
        }
        self.output.clear();
        Ok(())
    }

    /// Marks the connection failed (the first reason is kept).
    fn fail(&mut self, why: String) {
        self.failure.get_or_insert(why);
    }
}

/// The frame at `at` in `input`, if it is all there: type, flags, stream and the payload's
/// range.
fn frame_at(input: &[u8], at: usize) -> Option<(u8, u8, u32, Range<usize>)> {
    let header = input.get(at..at + 9)?;
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & MAX_WINDOW;
    let payload = at + 9..at + 9 + len;
    (payload.end <= input.len()).then_some((header[3], header[4], stream, payload))
}

/// A big-endian `u32` at `at` in `bytes`, or 0.
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// One open loop's schedule and slots.
struct Run<'a> {
    call: &'a dyn GrpcCall,
    slots: &'a Slots,
    start: Instant,
    interval: Duration,
    connections: usize,
    count: usize,
    pace: Duration,
}

impl Run<'_> {
    fn due(&self, i: usize) -> Instant {
        self.start + self.interval.mul_f64(i as f64)
    }

    /// Sends every request at its time, waking at most once per `pace`: each wake reads the
    /// answers that arrived and sends every request due by then, with one write per
    /// connection. Returns how many were sent (all, unless the server stalled past the give-up
    /// time).
    fn send(&self, conns: &mut [Connection], bodies: &Bodies, block: &[u8]) -> usize {
        let give_up = self.due(self.count) + REQUEST_TIMEOUT * 2;
        let mut i = 0;
        while i < self.count {
            self.receive(conns);
            let now = Instant::now();
            let due = self.due(i);
            if due > now {
                // With answers awaited, wake again after `pace` to read them.
                let awaited = conns.iter().any(|c| c.open > 0);
                std::thread::sleep(if awaited { self.pace } else { (due - now).max(self.pace) });
                continue;
            }
            while i < self.count && self.due(i) <= now {
                let c = i % self.connections;
                let body = bodies.get(i);
                while !self.has_room(&conns[c], body.len()) {
                    // Room comes with answers: send what is staged, read, wait (the wait counts
                    // in the latency).
                    self.flush(conns);
                    self.receive(conns);
                    if Instant::now() > give_up {
                        return i;
                    }
                    std::thread::sleep(self.pace);
                }
                self.stage(i, &mut conns[c], body, block);
                i += 1;
            }
            self.flush(conns);
        }
        self.count
    }

    /// Whether `conn` has room for a request of `len` bytes now: a stream, and window for the
    /// message (or it failed: the request then fails at once).
    fn has_room(&self, conn: &Connection, len: usize) -> bool {
        conn.failure.is_some()
            || (conn.open < conn.max_open
                && conn.window >= len as i64
                && self.slots.in_flight.load(std::sync::atomic::Ordering::Relaxed) < MAX_IN_FLIGHT)
    }

    /// Stages request `i`'s frames (HEADERS, then the message in DATA frames, the last one
    /// ending the stream) and records its send lag; or records its failure if `conn` failed or
    /// the request cannot go on it.
    fn stage(&self, i: usize, conn: &mut Connection, body: &[u8], block: &[u8]) {
        let due = self.due(i);
        let sent = Instant::now();
        if let Some(why) = &conn.failure {
            self.slots.record(i, sent - due, sent - due, Outcome::Failed("transport", why.clone()));
            return;
        }
        if body.len() > conn.stream_window as usize {
            let why = format!("a request of {} bytes is over the server's stream window", body.len());
            self.slots.record(i, sent - due, sent - due, Outcome::Failed("bad answer", why));
            return;
        }
        let stream = u32::try_from(2 * (i / self.connections) + 1).unwrap_or(MAX_WINDOW);
        frame_header(&mut conn.output, block.len(), HEADERS, END_HEADERS, stream);
        conn.output.extend_from_slice(block);
        let mut chunks = body.chunks((conn.max_frame as usize).max(1)).peekable();
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() { END_STREAM } else { 0 };
            frame_header(&mut conn.output, chunk.len(), DATA, flags, stream);
            conn.output.extend_from_slice(chunk);
        }
        conn.window -= body.len() as i64;
        conn.open += 1;
        self.slots.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.slots.record_lag(i, sent - due);
    }

    /// Writes every connection's staged frames.
    fn flush(&self, conns: &mut [Connection]) {
        for conn in conns.iter_mut().filter(|c| !c.output.is_empty() && c.failure.is_none()) {
            if let Err(e) = conn.flush() {
                conn.fail(format!("{e:#}"));
            }
        }
    }

    /// Reads what arrived on every connection and handles its whole frames; then sends the
    /// frames that asks for (acknowledgements, window updates).
    fn receive(&self, conns: &mut [Connection]) {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_BUFFER]);
        }
        SCRATCH.with_borrow_mut(|scratch| {
            for (c, conn) in conns.iter_mut().enumerate().filter(|(_, c)| c.failure.is_none()) {
                if let Err(e) = conn.fill(scratch) {
                    conn.fail(format!("{e:#}"));
                }
                let input = std::mem::take(&mut conn.input);
                let mut at = 0;
                while let Some((kind, flags, stream, payload)) = frame_at(&input, at) {
                    at = payload.end;
                    if let Err(e) = self.handle(c, conn, (kind, flags, stream), &input[payload]) {
                        conn.fail(format!("{e:#}"));
                        break;
                    }
                }
                conn.input = input;
                conn.input.drain(..at);
            }
        });
        self.flush(conns);
    }

    /// One frame from the server on connection `c`.
    fn handle(
        &self,
        c: usize,
        conn: &mut Connection,
        (kind, flags, stream): (u8, u8, u32),
        payload: &[u8],
    ) -> Result<()> {
        match kind {
            DATA => {
                conn.received = conn.received.saturating_add(payload.len() as u32);
                let data = if flags & PADDED != 0 {
                    let pad = usize::from(payload.first().copied().unwrap_or(0));
                    payload.get(1..payload.len().saturating_sub(pad)).unwrap_or_default()
                } else {
                    payload
                };
                conn.answers.entry(stream).or_default().extend_from_slice(data);
                if flags & END_STREAM != 0 {
                    let answer = conn.answers.remove(&stream);
                    self.answered(c, conn, stream, answer);
                }
                if conn.received >= WINDOW_REFILL {
                    frame_header(&mut conn.output, 4, WINDOW_UPDATE, 0, 0);
                    conn.output.extend_from_slice(&conn.received.to_be_bytes());
                    conn.received = 0;
                }
            }
            // The answer's headers, or its trailers (which end the stream).
            HEADERS if flags & END_STREAM != 0 => {
                let answer = conn.answers.remove(&stream);
                self.answered(c, conn, stream, answer);
            }
            RST_STREAM => {
                conn.answers.remove(&stream);
                let reset = Outcome::Failed("transport", format!("stream reset, code {}", be_u32(payload, 0)));
                self.ended(c, conn, stream, reset);
            }
            SETTINGS if flags & ACK == 0 => conn.settings(payload)?,
            PING if flags & ACK == 0 => {
                frame_header(&mut conn.output, payload.len(), PING, ACK, 0);
                conn.output.extend_from_slice(payload);
            }
            WINDOW_UPDATE if stream == 0 => conn.window += i64::from(be_u32(payload, 0) & MAX_WINDOW),
            GOAWAY => bail!("the server sent GOAWAY (code {})", be_u32(payload, 4)),
            _ => {}
        }
        Ok(())
    }

    /// Request index of `stream` on connection `c`.
    fn index(&self, c: usize, stream: u32) -> Option<usize> {
        let i = (stream as usize).checked_sub(1)? / 2 * self.connections + c;
        (!stream.is_multiple_of(2) && i < self.count).then_some(i)
    }

    /// `stream` ended: times the request and checks its answer.
    fn answered(&self, c: usize, conn: &mut Connection, stream: u32, answer: Option<Vec<u8>>) {
        let outcome = match answer.as_deref().map(message) {
            None => Outcome::Failed("grpc status", "an answer with no message (a gRPC error ends so)".into()),
            Some(Err(why)) => Outcome::Failed("bad answer", why),
            Some(Ok(message)) => self.call.verify(message),
        };
        self.ended(c, conn, stream, outcome);
    }

    /// Records how `stream` of connection `c` ended, now.
    fn ended(&self, c: usize, conn: &mut Connection, stream: u32, outcome: Outcome) {
        let Some(i) = self.index(c, stream) else { return };
        let end = Instant::now();
        let latency = end.saturating_duration_since(self.due(i));
        let outcome = if latency > REQUEST_TIMEOUT {
            Outcome::Failed("timeout", "no answer within the request timeout".into())
        } else {
            outcome
        };
        self.slots.finish(i, latency, outcome);
        self.slots.ended_at(self.start, end);
        conn.open = conn.open.saturating_sub(1);
        self.slots.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The message of an answer's body: exactly one uncompressed length-prefixed gRPC message.
fn message(body: &[u8]) -> Result<&[u8], String> {
    let (prefix, rest) = body.split_at_checked(5).ok_or_else(|| format!("{} bytes answered", body.len()))?;
    if prefix[0] != 0 {
        return Err(format!("a message with compression flag {}", prefix[0]));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len != rest.len() {
        return Err(format!("a message of {len} bytes in a body of {}", body.len()));
    }
    Ok(rest)
}
