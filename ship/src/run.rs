//! The shipper: a follower thread feeding a pipelined JetStream publisher.

use crate::{
    connect, message_id, parse_message_id, subject, subject_matches, ShipConfig, ShipError, ShipEvent, ShipProgress, PREV_LSN_HEADER,
};
use async_nats::jetstream::{self, stream, Context};
use bytes::Bytes;
use futures_util::stream::StreamExt as _;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tradewal::{FollowError, Followed, Follower, Lsn};
use tradewal_codec::{write_raw_line, RecordKind};

/// How often the cursor is committed and progress published (at most).
const TICK: Duration = Duration::from_millis(50);
/// Records handed from the follower thread to the publisher at a time (fewer wake-ups).
const FEED_BATCH: usize = 256;
/// First pause after a stall.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between attempts while the server does not answer.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// JetStream's error code for a publish whose `Nats-Expected-Last-Sequence` does not hold.
const WRONG_LAST_SEQUENCE: u64 = 10071;

/// Ships the log in `cfg.dir` into `cfg.stream` until `stop` is set (or, with `cfg.once`, until
/// everything acknowledged when it started is in the stream). `on_event` hears connection drops,
/// stalls and resumes; `progress` is updated as acks arrive. Blocks the calling thread (it runs its
/// own single-threaded async runtime and one follower thread).
///
/// A stall (no ack in time, a dropped connection, a stream without a leader, a publish the
/// stream took out of its expected place) is not an error: the shipper pauses (100 ms, doubling
/// up to 5 s) and starts again from what the stream holds, on a new connection. Errors (the cursor
/// is never committed past what the stream acknowledged): an unreachable server at the start, a
/// stream that does not take the subject or holds another log's messages, a publish the server
/// refused, a gap in the log (retention removed a segment not yet shipped).
pub fn ship(cfg: &ShipConfig, progress: &ShipProgress, stop: &AtomicBool, on_event: &dyn Fn(ShipEvent)) -> Result<(), ShipError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ShipError::Request { what: "starting the async runtime".into(), reason: e.to_string() })?;
    rt.block_on(async {
        let mut restarting = false;
        let mut pause = BACKOFF_MIN;
        loop {
            let acked_before = progress.records();
            let (at, error) = match run(cfg, progress, stop, on_event, restarting).await {
                Ok(()) => return Ok(()),
                Err(Stop::Stall { at, error }) => (at, error),
                // The server is still away (restarting, electing a leader): keep trying.
                Err(Stop::Fatal(e @ (ShipError::Connect { .. } | ShipError::Request { .. }))) if restarting => {
                    (progress.shipped() + 1, e.to_string())
                }
                Err(Stop::Fatal(e)) => return Err(e),
            };
            if progress.records() > acked_before {
                pause = BACKOFF_MIN; // the stream took messages since the last stall: a new trouble
            }
            progress.stalls.fetch_add(1, Ordering::Relaxed);
            on_event(ShipEvent::Stalled { at, error, retry_in: pause });
            let until = Instant::now() + pause;
            while Instant::now() < until {
                if stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                tokio::time::sleep((until - Instant::now()).min(TICK)).await;
            }
            pause = (pause * 2).min(BACKOFF_MAX);
            restarting = true;
        }
    })
}

/// Why one [`run`] ended early.
enum Stop {
    /// Start again from what the stream holds (after a pause).
    Stall {
        /// The first LSN not acknowledged.
        at: Lsn,
        /// What happened.
        error: String,
    },
    /// Shipping stops with this error.
    Fatal(ShipError),
}

impl From<ShipError> for Stop {
    fn from(e: ShipError) -> Stop {
        Stop::Fatal(e)
    }
}

impl From<FollowError> for Stop {
    fn from(e: FollowError) -> Stop {
        Stop::Fatal(e.into())
    }
}

/// One record on its way: published (payload `Some`) or a checkpoint (not shipped, `None`).
struct Pending {
    lsn: Lsn,
    prev: Lsn,
    /// The stream sequence that must be the stream's last when this message arrives
    /// (`Nats-Expected-Last-Sequence`): the stream stores it right after its predecessor or not
    /// at all.
    expect: u64,
    payload: Option<Bytes>,
    /// When it was (last) published.
    sent: Instant,
    /// The stream acknowledged it (it may still wait for an earlier one).
    acked: bool,
}

/// Why the stream did not take a publish.
enum AckError {
    /// No responder (a stream between leaders), the stream's last sequence is not the expected
    /// one (an earlier publish was lost): start again from the stream.
    Retry(String),
    /// The server answered with a refusal (a limit, a bad message): stop.
    Refused(String),
}

/// What the follower thread sends.
enum Feed {
    /// Up to [`FEED_BATCH`] records in LSN order.
    Records(Vec<Followed>),
    /// Nothing more is acknowledged right now.
    Idle,
    Failed(FollowError),
}

struct Shipper<'a> {
    cfg: &'a ShipConfig,
    client: async_nats::Client,
    /// Acks of every publish come to `INBOX.<lsn>` (one subscription, no per-message future).
    inbox: String,
    subject: String,
    log_id: u64,
    progress: &'a ShipProgress,
    on_event: &'a dyn Fn(ShipEvent),
    /// Published or skipped, not yet acknowledged, in LSN order.
    unacked: VecDeque<Pending>,
    /// Every LSN up to this one is in the stream (or a checkpoint).
    shipped: Lsn,
    /// The last LSN published (the `prev` of the next message).
    last_published: Lsn,
    /// The stream sequence the last message published gets (the `expect` of the next one).
    last_seq: u64,
    /// Records up to this LSN are already in the stream: read past them.
    skip_through: Lsn,
    /// The stream's last message for this log, checked against the log's record when read.
    stream_last: Option<StreamLast>,
    line: Vec<u8>,
}

/// One connection's worth of shipping: from the later of the cursor and the stream's last message
/// for this log (or, when the stream lost messages the cursor says it took, from the stream's last).
async fn run(
    cfg: &ShipConfig,
    progress: &ShipProgress,
    stop: &AtomicBool,
    on_event: &dyn Fn(ShipEvent),
    restarting: bool,
) -> Result<(), Stop> {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let client = connect(&cfg.urls, Some(ev_tx)).await?;
    let js = jetstream::ContextBuilder::new().timeout(cfg.ack_timeout).build(client.clone());
    let inbox = client.new_inbox();
    let mut acks = client
        .subscribe(format!("{inbox}.*"))
        .await
        .map_err(|e| ShipError::Request { what: "subscribing to the ack inbox".into(), reason: e.to_string() })?;
    let mut follower = Follower::named(&cfg.dir, &cfg.cursor, 1)?;
    let log_id = follower.log_id()?.ok_or_else(|| ShipError::NoLog(cfg.dir.clone()))?;
    progress.log_id.store(log_id, Ordering::Relaxed);
    let subject = subject(&cfg.prefix, log_id);
    let mut stream = ensure_stream(&js, cfg, &subject).await?;
    let stream_last = last_in_stream(&stream, cfg, &subject, log_id).await?;
    let state = stream.info().await.map_err(|e| not_reachable(cfg, &format!("stream {}: {e}", cfg.stream)))?.state.clone();
    alone_in_stream(cfg, &subject, stream_last.as_ref(), state.last_sequence, state.messages)?;
    let cursor = follower.committed();
    let last = stream_last.as_ref().map_or(0, |l| l.lsn);
    let mut shipped = cursor;
    if last < cursor {
        // Only checkpoints (never shipped) may lie between the stream's last message and the cursor.
        if let Some(lsn) = first_shipped_kind(cfg, last + 1, cursor)? {
            if last == 0 && !restarting {
                return Err(Stop::Fatal(ShipError::Foreign {
                    stream: cfg.stream.clone(),
                    subject,
                    reason: format!(
                        "the cursor {} says LSN {cursor} was shipped but the stream holds no message of this log (LSN {lsn} is missing): messages were removed (purge, limits, a recreated stream); drop the cursor (`tradewal readers DIR --drop {}`) to ship the log again",
                        cfg.cursor, cfg.cursor
                    ),
                }));
            }
            // The stream acknowledged these and lost them (a single server killed before it wrote
            // them to disk), or someone removed them: the log still has them.
            on_event(ShipEvent::Reshipping { from: last + 1, through: cursor });
            follower.rewind(last + 1)?;
            shipped = last;
        }
    }
    let from = last.max(shipped) + 1;
    on_event(ShipEvent::Started { log_id, subject: subject.clone(), from, cursor, stream_last: last });
    if restarting {
        on_event(ShipEvent::Resumed { at: from });
    }
    let mut s = Shipper {
        cfg,
        client,
        inbox,
        subject,
        log_id,
        progress,
        on_event,
        unacked: VecDeque::new(),
        shipped,
        last_published: last,
        last_seq: state.last_sequence,
        skip_through: last,
        stream_last,
        line: Vec::with_capacity(512),
    };
    progress.shipped.store(shipped, Ordering::Release);
    let (feed_tx, mut feed_rx) = mpsc::channel(cfg.max_in_flight.max(64));
    let (commit_tx, commit_rx) = std::sync::mpsc::channel();
    let halt = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let thread = {
        let (halt, acked) = (halt.clone(), acked.clone());
        std::thread::Builder::new()
            .name("tradewal-ship-follow".into())
            .spawn(move || feed(follower, feed_tx, commit_rx, &halt, &acked))
            .map_err(|e| ShipError::Request { what: "starting the follower thread".into(), reason: e.to_string() })?
    };
    let result = s.main_loop(&mut feed_rx, &mut ev_rx, &mut acks, &commit_tx, stop, &acked).await;
    // The last commit, then stop the follower (dropping the receiver unblocks its send).
    let _ = commit_tx.send(s.shipped);
    drop(feed_rx);
    halt.store(true, Ordering::Release);
    let committed =
        thread.join().unwrap_or_else(|_| Err(ShipError::Request { what: "the follower thread".into(), reason: "panicked".into() }));
    result.and(committed.map_err(Stop::Fatal))
}

/// One log per stream: each message says which stream sequence must precede it, so nothing else
/// may write into the stream (and, when the log has no message there yet, nothing else may be in
/// it).
fn alone_in_stream(cfg: &ShipConfig, subject: &str, last: Option<&StreamLast>, last_seq: u64, messages: u64) -> Result<(), ShipError> {
    let foreign = |reason: String| ShipError::Foreign { stream: cfg.stream.clone(), subject: subject.to_string(), reason };
    match last {
        Some(l) if l.seq != last_seq => Err(foreign(format!(
            "after this log's last message (stream sequence {}) the stream holds other messages up to sequence {last_seq}: ship each log into a stream of its own",
            l.seq
        ))),
        None if messages > 0 => Err(foreign(format!(
            "the stream holds {messages} messages of other subjects and none of this log: ship each log into a stream of its own"
        ))),
        _ => Ok(()),
    }
}

/// The first LSN in `from..=to` that is an intent or an outcome (something the shipper sends).
fn first_shipped_kind(cfg: &ShipConfig, from: Lsn, to: Lsn) -> Result<Option<Lsn>, ShipError> {
    let mut f = Follower::open(&cfg.dir, from)?;
    while f.next_lsn() <= to {
        match f.next_timeout(Duration::from_secs(1))? {
            Some(r) if r.kind != RecordKind::Checkpoint => return Ok(Some(r.lsn)),
            Some(_) => {}
            None => return Ok(Some(f.next_lsn())),
        }
    }
    Ok(None)
}

/// The follower thread: yields records into `tx`, commits what the shipper says is shipped.
fn feed(
    mut f: Follower,
    tx: mpsc::Sender<Feed>,
    commits: std::sync::mpsc::Receiver<Lsn>,
    halt: &AtomicBool,
    acked: &std::sync::atomic::AtomicU64,
) -> Result<(), ShipError> {
    let mut committed = f.committed();
    let mut commit = |f: &mut Follower, lsn: Lsn| -> Result<(), ShipError> {
        if lsn > committed {
            f.commit(lsn)?;
            committed = lsn;
        }
        Ok(())
    };
    let mut idle_sent = false;
    while !halt.load(Ordering::Acquire) {
        while let Ok(lsn) = commits.try_recv() {
            commit(&mut f, lsn)?;
        }
        acked.store(f.acknowledged().unwrap_or(0), Ordering::Relaxed);
        let item = match f.next_timeout(Duration::from_millis(20)) {
            Ok(Some(r)) => {
                let mut batch = Vec::with_capacity(FEED_BATCH);
                batch.push(r);
                while batch.len() < FEED_BATCH {
                    match f.next_timeout(Duration::ZERO) {
                        Ok(Some(r)) => batch.push(r),
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.blocking_send(Feed::Records(batch));
                            let _ = tx.blocking_send(Feed::Failed(e));
                            return Ok(());
                        }
                    }
                }
                Feed::Records(batch)
            }
            Ok(None) if idle_sent || !f.caught_up() => continue,
            Ok(None) => Feed::Idle,
            Err(e) => Feed::Failed(e),
        };
        idle_sent = matches!(item, Feed::Idle);
        let failed = matches!(item, Feed::Failed(_));
        if tx.blocking_send(item).is_err() || failed {
            break;
        }
    }
    while let Ok(lsn) = commits.try_recv() {
        commit(&mut f, lsn)?;
    }
    Ok(())
}

impl Shipper<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn main_loop(
        &mut self,
        feed: &mut mpsc::Receiver<Feed>,
        events: &mut mpsc::UnboundedReceiver<async_nats::Event>,
        acks: &mut async_nats::Subscriber,
        commits: &std::sync::mpsc::Sender<Lsn>,
        stop: &AtomicBool,
        acked: &std::sync::atomic::AtomicU64,
    ) -> Result<(), Stop> {
        let mut tick = tokio::time::interval(TICK);
        let mut idle = false;
        let mut committed = self.shipped;
        loop {
            if stop.load(Ordering::Acquire) || (self.cfg.once && idle && self.unacked.is_empty()) {
                return Ok(());
            }
            let room = self.unacked.len() < self.cfg.max_in_flight;
            tokio::select! {
                biased;
                Some(ev) = events.recv() => self.event(ev)?,
                Some(m) = acks.next() => self.ack(&m).map_err(|e| self.stop(e))?,
                item = feed.recv(), if room => match item {
                    Some(Feed::Records(v)) => {
                        idle = false;
                        for r in v {
                            self.take(r).await?;
                        }
                    }
                    Some(Feed::Idle) => idle = true,
                    Some(Feed::Failed(e)) => return Err(e.into()),
                    None => return Ok(()),
                },
                _ = tick.tick() => {
                    self.progress.acknowledged.store(acked.load(Ordering::Relaxed), Ordering::Relaxed);
                    if self.shipped > committed {
                        committed = self.shipped;
                        let _ = commits.send(committed);
                    }
                    if let Some(p) = self.unacked.iter().find(|p| p.payload.is_some() && !p.acked) {
                        if p.sent.elapsed() > self.cfg.ack_timeout {
                            return Err(self.stop(AckError::Retry(format!("no ack from the stream within {:?}", self.cfg.ack_timeout))));
                        }
                    }
                }
            }
        }
    }

    /// A connection event. Publishes in flight when the connection dropped may be lost (and the
    /// client resends none of them): start again from what the stream holds.
    fn event(&self, ev: async_nats::Event) -> Result<(), Stop> {
        match ev {
            async_nats::Event::Disconnected => (self.on_event)(ShipEvent::Disconnected),
            async_nats::Event::Connected => {
                (self.on_event)(ShipEvent::Reconnected);
                if self.unacked.iter().any(|p| p.payload.is_some() && !p.acked) {
                    return Err(self.stop(AckError::Retry("the connection dropped with publishes awaiting their ack".into())));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// How a failed publish ends this run: a refusal ends shipping, anything else starts again
    /// from the stream.
    fn stop(&self, e: AckError) -> Stop {
        let at = self.unacked.iter().find(|p| p.payload.is_some() && !p.acked).map_or(self.shipped + 1, |p| p.lsn);
        match e {
            AckError::Refused(reason) => Stop::Fatal(ShipError::Refused { lsn: at, reason }),
            AckError::Retry(error) => Stop::Stall { at, error },
        }
    }

    /// A record from the follower: read past it (already in the stream), queue it (checkpoint),
    /// or publish it.
    async fn take(&mut self, r: Followed) -> Result<(), Stop> {
        let payload = if r.kind == RecordKind::Checkpoint {
            None
        } else {
            self.line.clear();
            write_raw_line(&mut self.line, r.lsn, &r.record).expect("writing to a Vec cannot fail");
            self.line.pop(); // the newline: one message is one line
            Some(Bytes::copy_from_slice(&self.line))
        };
        if r.lsn <= self.skip_through {
            self.check_stream_last(r.lsn, payload.as_ref())?;
            self.shipped = self.shipped.max(r.lsn);
            self.progress.shipped.store(self.shipped, Ordering::Release);
            return Ok(());
        }
        let p = Pending { lsn: r.lsn, prev: self.last_published, expect: self.last_seq, payload, sent: Instant::now(), acked: false };
        let published = p.payload.is_some();
        if published {
            self.last_published = p.lsn;
            self.last_seq += 1;
        }
        self.unacked.push_back(p);
        if published {
            let p = self.unacked.back().expect("just pushed");
            if let Err(e) = publish(&self.client, &self.inbox, &self.subject, self.log_id, p).await {
                return Err(self.stop(AckError::Retry(e)));
            }
        }
        self.settle();
        Ok(())
    }

    /// The stream's last message for this log must be this log's record at that LSN.
    fn check_stream_last(&mut self, lsn: Lsn, payload: Option<&Bytes>) -> Result<(), ShipError> {
        if let Some(StreamLast { lsn: last, payload: body, .. }) = &self.stream_last {
            if *last == lsn {
                if payload != Some(body) {
                    return Err(ShipError::Foreign {
                        stream: self.cfg.stream.clone(),
                        subject: self.subject.clone(),
                        reason: format!(
                            "the stream's message for LSN {lsn} is not this log's record at that LSN (another log with the same id?)"
                        ),
                    });
                }
                self.stream_last = None;
            }
        }
        Ok(())
    }

    /// An answer on the ack inbox: `INBOX.<lsn>`, a JetStream publish ack or error.
    fn ack(&mut self, m: &async_nats::Message) -> Result<(), AckError> {
        let Some(lsn) = m.subject.as_str().rsplit('.').next().and_then(|l| l.parse::<Lsn>().ok()) else {
            return Ok(()); // not ours
        };
        if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(AckError::Retry(format!("LSN {lsn}: no responder for the subject (the stream has no leader right now)")));
        }
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null);
        if let Some(err) = v.get("error") {
            let code = err.get("err_code").and_then(serde_json::Value::as_u64).unwrap_or(0);
            let what = format!("LSN {lsn}: {} (JetStream error {code})", err.get("description").and_then(|d| d.as_str()).unwrap_or("?"));
            return Err(if code == jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE.0 || code == WRONG_LAST_SEQUENCE {
                AckError::Retry(what)
            } else {
                AckError::Refused(what)
            });
        }
        if v.get("stream").and_then(|s| s.as_str()) != Some(self.cfg.stream.as_str()) {
            return Err(AckError::Refused(format!("LSN {lsn}: unexpected ack {}", String::from_utf8_lossy(&m.payload))));
        }
        // Acks come in order for one stream, but a resend can bring a second ack: match by LSN.
        let Some(front) = self.unacked.front().map(|p| p.lsn) else { return Ok(()) };
        if let Ok(i) = self.unacked.binary_search_by_key(&lsn, |p| p.lsn) {
            let p = &mut self.unacked[i];
            if p.payload.is_some() && !p.acked {
                p.acked = true;
                self.progress.records.fetch_add(1, Ordering::Relaxed);
                self.progress.bytes.fetch_add(p.payload.as_ref().map_or(0, Bytes::len) as u64, Ordering::Relaxed);
            }
        }
        if lsn >= front {
            self.settle();
        }
        Ok(())
    }

    /// Every record at the front that is acknowledged (or a checkpoint) is done.
    fn settle(&mut self) {
        while self.unacked.front().is_some_and(|p| p.payload.is_none() || p.acked) {
            self.shipped = self.unacked.pop_front().expect("front").lsn;
        }
        self.progress.shipped.store(self.shipped, Ordering::Release);
    }
}

/// Publishes `p` on the connection with its ack going to `INBOX.<lsn>`.
async fn publish(client: &async_nats::Client, inbox: &str, subject: &str, log_id: u64, p: &Pending) -> Result<(), String> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id(log_id, p.lsn).as_str());
    headers.insert(PREV_LSN_HEADER, p.prev.to_string().as_str());
    headers.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, p.expect.to_string().as_str());
    let payload = p.payload.clone().expect("only records with a payload are published");
    client
        .publish_with_reply_and_headers(subject.to_string(), format!("{inbox}.{}", p.lsn), headers, payload)
        .await
        .map_err(|e| format!("LSN {}: publishing: {e}", p.lsn))
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Finds the stream (checking it takes `subject` and, if asked, has the replica count) or
/// creates it (file storage, subjects `PREFIX.*`).
pub(crate) async fn ensure_stream(js: &Context, cfg: &ShipConfig, subject: &str) -> Result<stream::Stream, ShipError> {
    let bad = |reason: String| ShipError::Stream { stream: cfg.stream.clone(), reason };
    match js.get_stream(&cfg.stream).await {
        Ok(mut s) => {
            let info = s.info().await.map_err(|e| bad(format!("reading its configuration: {e}")))?;
            let c = &info.config;
            if !c.subjects.iter().any(|p| subject_matches(p, subject)) {
                return Err(bad(format!("takes subjects {:?}, not {subject}", c.subjects)));
            }
            if let Some(r) = cfg.replicas {
                if c.num_replicas != r {
                    return Err(bad(format!("has {} replicas, not the {r} asked for", c.num_replicas)));
                }
            }
            Ok(s)
        }
        Err(e) if is_stream_not_found(&e) => {
            let config = stream::Config {
                name: cfg.stream.clone(),
                subjects: vec![format!("{}.*", cfg.prefix)],
                storage: stream::StorageType::File,
                num_replicas: cfg.replicas.unwrap_or(1),
                ..Default::default()
            };
            js.create_stream(config).await.map_err(|e| bad(format!("cannot create it: {e}")))
        }
        Err(e) => Err(not_reachable(cfg, &e.to_string())),
    }
}

/// The error for a JetStream request that got no useful answer.
pub(crate) fn not_reachable(cfg: &ShipConfig, reason: &str) -> ShipError {
    ShipError::Request { what: format!("JetStream at {} (is JetStream enabled?)", cfg.urls.join(",")), reason: reason.to_string() }
}

/// The stream's last message for one log.
pub(crate) struct StreamLast {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its body.
    pub payload: Bytes,
    /// Its stream sequence.
    pub seq: u64,
}

/// The stream's last message for this log; an error if it is not this log's.
pub(crate) async fn last_in_stream(
    stream: &stream::Stream,
    cfg: &ShipConfig,
    subject: &str,
    log_id: u64,
) -> Result<Option<StreamLast>, ShipError> {
    use jetstream::stream::LastRawMessageErrorKind as K;
    let started = Instant::now();
    let m = loop {
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => break m,
            Err(e) if e.kind() == K::NoMessageFound => return Ok(None),
            Err(e) if matches!(e.kind(), K::JetStream(ref j) if j.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND) => {
                return Ok(None)
            }
            // A cluster that is electing the stream's leader answers late: ask again for a while.
            Err(e) if started.elapsed() < Duration::from_secs(10) && !matches!(e.kind(), K::InvalidSubject) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = e;
            }
            Err(e) => return Err(not_reachable(cfg, &format!("last message of {subject}: {e}"))),
        }
    };
    let foreign = |reason: String| ShipError::Foreign { stream: cfg.stream.clone(), subject: subject.to_string(), reason };
    let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_string());
    match id.as_deref().and_then(parse_message_id) {
        Some((id, lsn)) if id == log_id => Ok(Some(StreamLast { lsn, payload: m.payload, seq: m.sequence })),
        Some((id, _)) => Err(foreign(format!("its last message belongs to log {id:016x}, not {log_id:016x}"))),
        None => Err(foreign(format!("its last message (stream sequence {}) has no tradewal message id ({id:?})", m.sequence))),
    }
}
