//! `herald-bench`: Herald's load generator.
//!
//! `herald-bench run` opens real Socket.IO v5 clients over WebSocket against
//! one running server (Herald, or the bare socketioxide floor, `bench-floor`),
//! plays one scenario, checks every delivery (lost and duplicated ones are
//! counted exactly), reads the server's CPU time and RSS from `/proc`, and
//! appends one JSON line of results. `herald-bench report` prints those lines
//! as a table with Herald/floor ratios. `scripts/bench.sh` runs them all,
//! each against a freshly started server (and, for Herald, a fresh
//! database); the README says how to read the table.
//!
//! The generator runs on one thread, so what it measures is the server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::{SinkExt, StreamExt};
use herald::wire::{self, EnginePacket, SocketPacket};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(name = "herald-bench", about = "Herald's load benchmark (see scripts/bench.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plays one scenario against a running server and appends its results
    /// as one JSON line to `--out`.
    Run(RunArgs),
    /// Prints the results in a JSON-lines file as a table, Herald beside the
    /// floor with their ratio.
    Report {
        /// The JSON-lines file `run` wrote.
        file: PathBuf,
    },
}

#[derive(Parser, Clone)]
struct RunArgs {
    /// The server's base URL, e.g. http://127.0.0.1:3000.
    #[arg(long)]
    target: String,
    /// Which server it is: `herald` publishes through `POST /api/publish`
    /// with `{"broadcast": true, "data": …}` and an API key; `floor` takes
    /// `{"data": …}`.
    #[arg(long, value_enum)]
    server: ServerKind,
    /// The server's process id, whose CPU time and RSS are read from /proc.
    #[arg(long)]
    pid: u32,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Socket.IO clients to connect.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Broadcasts to publish (fan-out).
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Broadcasts per second (fan-out).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// How long connections are held idle before RSS is read (idle).
    #[arg(long, default_value = "2s", value_parser = parse_secs)]
    hold: Duration,
    /// Herald's publish API key.
    #[arg(long, env = "HERALD_BENCH_API_KEY", default_value = "")]
    api_key: String,
    /// Where to append the JSON line.
    #[arg(long)]
    out: PathBuf,
    /// Cross-node: the other node of the cluster, whose subscribers hear
    /// the sends made on `--target` through Redis.
    #[arg(long)]
    peer: Option<String>,
    /// Cross-node: the cluster's Redis (`host:port`), whose command counts
    /// (`INFO commandstats`) are read before and after.
    #[arg(long)]
    redis: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Debug, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
enum ServerKind {
    Herald,
    Floor,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Debug, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
enum Scenario {
    /// Connections held idle: server RSS growth per connection.
    Idle,
    /// Broadcasts at `--rate` to every subscriber: deliveries, latency, CPU.
    Fanout,
    /// Broadcasts as fast as the server's publish API takes them (16 in
    /// flight).
    Burst,
    /// Every subscriber joins one room; one more client `send`s at `--rate`.
    Chat,
    /// Every subscriber, connected first, joins one room holding
    /// `--messages` stored messages at once, as after a deploy.
    JoinStorm,
    /// Two nodes of a cluster, `--subscribers` in one room on each; one
    /// client sends at `--rate` on `--target`: the latency of deliveries on
    /// the other node (through Redis) beside those on the sender's node,
    /// and Redis's commands per message.
    CrossNode,
}

impl Scenario {
    fn delivers(self) -> bool {
        matches!(self, Self::Fanout | Self::Burst | Self::Chat | Self::CrossNode)
    }
}

/// The room the chat scenario's clients join.
const CHAT_ROOM: &str = "bench";

fn parse_secs(raw: &str) -> Result<Duration, String> {
    raw.strip_suffix('s').and_then(|n| n.parse::<f64>().ok()).map(Duration::from_secs_f64).ok_or("like 2s".into())
}

/// One scenario's results: a JSON line.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Results {
    scenario: Option<Scenario>,
    server: Option<ServerKind>,
    subscribers: usize,
    messages: usize,
    deliveries: u64,
    deliveries_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_delivery: f64,
    kb_per_connection: f64,
    lost: u64,
    duplicated: u64,
    publish_errors: u64,
    rss_kib_before: u64,
    rss_kib_after: u64,
    seconds: f64,
    /// Join storm: the server's store operations during it (Herald's
    /// `/metrics`), and how long until every join was answered.
    #[serde(default)]
    store_ops: u64,
    #[serde(default)]
    seconds_to_join: f64,
    /// Cross-node: `p50_ms`/`p99_ms` are of the other node's deliveries;
    /// these of the sender's node's, in the same run.
    #[serde(default)]
    local_p50_ms: f64,
    #[serde(default)]
    local_p99_ms: f64,
    #[serde(default)]
    local_lost: u64,
    /// Cross-node: Redis `PUBLISH`es, and commands of every kind, per
    /// message sent (everything the nodes did meanwhile included).
    #[serde(default)]
    redis_publishes_per_message: f64,
    #[serde(default)]
    redis_commands_per_message: f64,
}

/// What `/proc` says about the server process.
struct ProcStats {
    cpu: Duration,
    rss_kib: u64,
}

fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("the server's /proc/PID/stat")?;
    // After the command name (in parentheses, which may hold spaces):
    // field 3 is the state; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("a stat line")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    let cpu = Duration::from_millis(ticks * 10);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    Ok(ProcStats { cpu, rss_kib })
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// Every delivery, checked: how often each client got each message, and
/// each delivery's latency.
struct Tally {
    messages: usize,
    seen: Vec<AtomicU8>,
    latencies_us: Mutex<Vec<u32>>,
    received: AtomicU64,
    last_at: Mutex<Option<Instant>>,
}

impl Tally {
    fn new(subscribers: usize, messages: usize) -> Self {
        Self {
            messages,
            seen: (0..subscribers * messages).map(|_| AtomicU8::new(0)).collect(),
            latencies_us: Mutex::new(Vec::with_capacity(subscribers * messages)),
            received: AtomicU64::new(0),
            last_at: Mutex::new(None),
        }
    }

    /// A delivery of message `n`, sent at `sent` (µs since the epoch).
    fn record(&self, client: usize, n: u64, sent: u64) {
        let Some(slot) = self.seen.get(client * self.messages + n as usize) else { return };
        slot.fetch_add(1, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
        let latency = now_micros().saturating_sub(sent);
        self.latencies_us.lock().unwrap().push(u32::try_from(latency).unwrap_or(u32::MAX));
        *self.last_at.lock().unwrap() = Some(Instant::now());
    }

    /// The latencies' median and 99th percentile, in ms (taken: once).
    fn p50_p99(&self) -> (f64, f64) {
        let mut latencies = std::mem::take(&mut *self.latencies_us.lock().unwrap());
        latencies.sort_unstable();
        (percentile(&latencies, 0.50), percentile(&latencies, 0.99))
    }

    /// (unique deliveries, duplicates, lost).
    fn check(&self) -> (u64, u64, u64) {
        let (mut unique, mut duplicated, mut lost) = (0, 0, 0);
        for slot in &self.seen {
            match slot.load(Ordering::Relaxed) {
                0 => lost += 1,
                n => {
                    unique += 1;
                    duplicated += u64::from(n - 1);
                }
            }
        }
        (unique, duplicated, lost)
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects one Socket.IO client to namespace `/` (and, with `room`, joins
/// it, waiting for the answer) and returns its WebSocket.
async fn connect(target: &str, room: Option<&str>) -> anyhow::Result<Ws> {
    let url = format!("{}/socket.io/?EIO=4&transport=websocket", target.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let mut sent_connect = false;
    while let Some(frame) = ws.next().await {
        let Message::Text(text) = frame? else { continue };
        match wire::decode_engine(&text)? {
            EnginePacket::Open(_) if !sent_connect => {
                ws.send(Message::text(wire::connect_frame(None))).await?;
                sent_connect = true;
            }
            EnginePacket::Ping => ws.send(Message::text(wire::PONG_FRAME)).await?,
            EnginePacket::Message(data) => match wire::decode_socket(&data)? {
                SocketPacket::Connect(_) => match room {
                    None => return Ok(ws),
                    Some(room) => {
                        let join = wire::event_frame("join", &json!({"room": room, "since": 0}), Some(1))?;
                        ws.send(Message::text(join)).await?;
                    }
                },
                SocketPacket::Ack { id: 1, args } => {
                    if args.first().and_then(|reply| reply.get("ok")).is_none() {
                        bail!("join refused: {args:?}");
                    }
                    return Ok(ws);
                }
                SocketPacket::ConnectError(err) => bail!("connection refused: {err}"),
                _ => {}
            },
            _ => {}
        }
    }
    bail!("closed during the handshake")
}

/// Reads a client's frames until it closes: answers pings, records
/// notifications.
async fn listen(mut ws: Ws, client: usize, tally: Arc<Tally>) {
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else { continue };
        match wire::decode_engine(&text) {
            Ok(EnginePacket::Ping) if ws.send(Message::text(wire::PONG_FRAME)).await.is_err() => return,
            Ok(EnginePacket::Message(data)) => {
                if let Ok(SocketPacket::Event { name, args, .. }) = wire::decode_socket(&data)
                    && let Some(payload) = args.first()
                    && let Some((n, sent)) = stamp(&name, payload)
                {
                    tally.record(client, n, sent);
                }
            }
            Ok(EnginePacket::Close) | Err(_) => return,
            _ => {}
        }
    }
}

/// Which message an event is and when it was sent: a `notification`'s
/// `data` is `{"n", "t"}`; a chat `message`'s `body` is `"<n> <t>"`.
fn stamp(event: &str, payload: &Value) -> Option<(u64, u64)> {
    match event {
        "notification" => Some((payload["data"]["n"].as_u64()?, payload["data"]["t"].as_u64()?)),
        "message" => {
            let (n, t) = payload["body"].as_str()?.split_once(' ')?;
            Some((n.parse().ok()?, t.parse().ok()?))
        }
        _ => None,
    }
}

/// Connects `count` clients, `CONCURRENCY` handshakes at a time, each then
/// listening on its own task.
async fn connect_all(target: &str, count: usize, room: Option<&str>, tally: &Arc<Tally>) -> anyhow::Result<()> {
    const CONCURRENCY: usize = 64;
    let clients: Vec<anyhow::Result<(usize, Ws)>> = futures::stream::iter(0..count)
        .map(|i| async move { connect(target, room).await.map(|ws| (i, ws)) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for client in clients {
        let (i, ws) = client.with_context(|| format!("connecting {count} clients"))?;
        tokio::spawn(listen(ws, i, tally.clone()));
    }
    Ok(())
}

async fn publish(http: &reqwest::Client, args: &RunArgs, n: usize) -> bool {
    let data = json!({"n": n, "t": now_micros()});
    let body = match args.server {
        ServerKind::Herald => json!({"broadcast": true, "data": data}),
        ServerKind::Floor => json!({"data": data}),
    };
    let request = http.post(format!("{}/api/publish", args.target));
    let request = if args.api_key.is_empty() { request } else { request.bearer_auth(&args.api_key) };
    matches!(request.json(&body).send().await, Ok(response) if response.status().is_success())
}

/// Publishes `messages` broadcasts at `--rate`, each in a task of its own
/// so a slow answer does not hold up the next.
async fn paced(args: &RunArgs, messages: usize, errors: &Arc<AtomicU64>) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
    let mut publishes = Vec::with_capacity(messages);
    for n in 0..messages {
        pace.tick().await;
        let (http, args, errors) = (http.clone(), args.clone(), errors.clone());
        publishes.push(tokio::spawn(async move {
            if !publish(&http, &args, n).await {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for publish in publishes {
        publish.await?;
    }
    Ok(())
}

/// Publishes `messages` broadcasts as fast as the API answers, 16 at a time.
async fn burst(args: &RunArgs, messages: usize, errors: &Arc<AtomicU64>) {
    let http = reqwest::Client::new();
    futures::stream::iter(0..messages)
        .for_each_concurrent(16, |n| {
            let http = &http;
            async move {
                if !publish(http, args, n).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
}

/// One more client sends `messages` chat messages to the room at `--rate`,
/// each with an ack; a send the server refuses counts in `errors`.
async fn chat(args: &RunArgs, messages: usize, errors: &Arc<AtomicU64>) -> anyhow::Result<()> {
    let mut sender = connect(&args.target, None).await?;
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
    let mut sent = 0;
    // Sends on the pace, and meanwhile answers pings and reads the acks;
    // then goes on reading them (and keeps the connection) in the background.
    let errors = errors.clone();
    let on_frame = move |frame: Message| -> Option<Message> {
        let Message::Text(text) = frame else { return None };
        match wire::decode_engine(&text).ok()? {
            EnginePacket::Ping => Some(Message::text(wire::PONG_FRAME)),
            EnginePacket::Message(data) => {
                if let Ok(SocketPacket::Ack { args, .. }) = wire::decode_socket(&data)
                    && args.first().is_none_or(|reply| reply.get("ok").is_none())
                    && errors.fetch_add(1, Ordering::Relaxed) == 0
                {
                    eprintln!("herald-bench: the first send refused was answered {:?}", args.first());
                }
                None
            }
            _ => None,
        }
    };
    while sent < messages {
        tokio::select! {
            _ = pace.tick() => {
                let send = json!({
                    "room": CHAT_ROOM, "client_id": format!("bench-{sent:08}"), "name": "bench",
                    "body": format!("{sent} {}", now_micros()),
                });
                sender.send(Message::text(wire::event_frame("send", &send, Some(sent as u64 + 1))?)).await?;
                sent += 1;
            }
            frame = sender.next() => {
                let Some(Ok(frame)) = frame else { anyhow::bail!("the sender's connection closed") };
                if let Some(reply) = on_frame(frame) {
                    sender.send(reply).await?;
                }
            }
        }
    }
    tokio::spawn(async move {
        while let Some(Ok(frame)) = sender.next().await {
            if let Some(reply) = on_frame(frame)
                && sender.send(reply).await.is_err()
            {
                break;
            }
        }
    });
    Ok(())
}

/// Herald's store operations so far (`herald_store_duration_seconds_count`);
/// 0 for the floor.
async fn store_ops(http: &reqwest::Client, args: &RunArgs) -> u64 {
    if args.server != ServerKind::Herald {
        return 0;
    }
    let Ok(response) = http.get(format!("{}/metrics", args.target)).send().await else { return 0 };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("herald_store_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Joins `CHAT_ROOM` from scratch on a connected client; the answer's
/// latency, if it was `ok`.
async fn join_once(mut ws: Ws) -> Option<Duration> {
    let started = Instant::now();
    let join = wire::event_frame("join", &json!({"room": CHAT_ROOM, "since": 0}), Some(1)).ok()?;
    ws.send(Message::text(join)).await.ok()?;
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else { continue };
        match wire::decode_engine(&text).ok()? {
            EnginePacket::Ping => ws.send(Message::text(wire::PONG_FRAME)).await.ok()?,
            EnginePacket::Message(data) => {
                if let Ok(SocketPacket::Ack { id: 1, args }) = wire::decode_socket(&data) {
                    let ok = args.first().and_then(|reply| reply.get("ok")).is_some();
                    return ok.then(|| started.elapsed());
                }
            }
            _ => {}
        }
    }
    None
}

/// The join storm: the room is filled first (Herald: room publishes through
/// the API; the floor keeps no history), every client connects, then all
/// join at once.
async fn join_storm(args: &RunArgs, results: &mut Results, before: &ProcStats) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    results.messages = args.messages;
    if args.server == ServerKind::Herald {
        let body = "x".repeat(200);
        futures::stream::iter(0..args.messages)
            .for_each_concurrent(16, |n| {
                let (http, body) = (&http, &body);
                async move {
                    let request = http
                        .post(format!("{}/api/publish", args.target))
                        .bearer_auth(&args.api_key)
                        .json(&json!({"room": CHAT_ROOM, "message": format!("{n} {body}")}));
                    let _ = request.send().await;
                }
            })
            .await;
    }
    let clients: Vec<Ws> = futures::stream::iter(0..args.subscribers)
        .map(|_| connect(&args.target, None))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let connected = proc_stats(args.pid)?;
    results.kb_per_connection =
        connected.rss_kib.saturating_sub(before.rss_kib) as f64 * 1.024 / args.subscribers.max(1) as f64;
    let ops_before = store_ops(&http, args).await;
    let started = Instant::now();
    let outcomes = futures::future::join_all(clients.into_iter().map(join_once)).await;
    results.seconds_to_join = started.elapsed().as_secs_f64();
    let after = proc_stats(args.pid)?;
    results.rss_kib_after = after.rss_kib;
    results.store_ops = store_ops(&http, args).await.saturating_sub(ops_before);
    let mut latencies: Vec<u32> =
        outcomes.iter().flatten().map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX)).collect();
    latencies.sort_unstable();
    results.deliveries = latencies.len() as u64;
    results.lost = (outcomes.len() - latencies.len()) as u64;
    results.deliveries_per_sec = results.deliveries as f64 / results.seconds_to_join.max(1e-3);
    results.p50_ms = percentile(&latencies, 0.50);
    results.p99_ms = percentile(&latencies, 0.99);
    let cpu = after.cpu.saturating_sub(connected.cpu);
    results.cpu_us_per_delivery = cpu.as_micros() as f64 / results.deliveries.max(1) as f64;
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

async fn run(args: RunArgs) -> anyhow::Result<Results> {
    let mut results = Results {
        scenario: Some(args.scenario),
        server: Some(args.server),
        subscribers: args.subscribers,
        ..Results::default()
    };
    let messages = if args.scenario.delivers() { args.messages } else { 0 };
    results.messages = messages;
    let tally = Arc::new(Tally::new(args.subscribers, messages));
    let started = Instant::now();
    let before = proc_stats(args.pid)?;
    results.rss_kib_before = before.rss_kib;
    if args.scenario == Scenario::JoinStorm {
        join_storm(&args, &mut results, &before).await?;
        results.seconds = started.elapsed().as_secs_f64();
        return Ok(results);
    }
    if args.scenario == Scenario::CrossNode {
        cross_node(&args, &mut results).await?;
        results.seconds = started.elapsed().as_secs_f64();
        return Ok(results);
    }
    let room = (args.scenario == Scenario::Chat).then_some(CHAT_ROOM);
    connect_all(&args.target, args.subscribers, room, &tally).await?;
    match args.scenario {
        Scenario::Idle => {
            tokio::time::sleep(args.hold).await;
            let after = proc_stats(args.pid)?;
            results.rss_kib_after = after.rss_kib;
            results.kb_per_connection =
                after.rss_kib.saturating_sub(before.rss_kib) as f64 * 1.024 / args.subscribers.max(1) as f64;
        }
        Scenario::JoinStorm | Scenario::CrossNode => unreachable!("played above"),
        Scenario::Fanout | Scenario::Burst | Scenario::Chat => {
            let connected = proc_stats(args.pid)?;
            results.kb_per_connection =
                connected.rss_kib.saturating_sub(before.rss_kib) as f64 * 1.024 / args.subscribers.max(1) as f64;
            let errors = Arc::new(AtomicU64::new(0));
            let first = Instant::now();
            match args.scenario {
                Scenario::Chat => chat(&args, messages, &errors).await?,
                Scenario::Burst => burst(&args, messages, &errors).await,
                _ => paced(&args, messages, &errors).await?,
            }
            settle(&tally, (args.subscribers * messages) as u64).await;
            let after = proc_stats(args.pid)?;
            results.rss_kib_after = after.rss_kib;
            let (unique, duplicated, lost) = tally.check();
            results.deliveries = unique;
            results.duplicated = duplicated;
            results.lost = lost;
            results.publish_errors = errors.load(Ordering::Relaxed);
            let last_at = tally.last_at.lock().unwrap().unwrap_or(first);
            results.deliveries_per_sec = unique as f64 / last_at.duration_since(first).as_secs_f64().max(1e-3);
            let cpu = after.cpu.saturating_sub(connected.cpu);
            results.cpu_us_per_delivery = cpu.as_micros() as f64 / unique.max(1) as f64;
            (results.p50_ms, results.p99_ms) = tally.p50_p99();
        }
    }
    results.seconds = started.elapsed().as_secs_f64();
    Ok(results)
}

/// Every one of `expected` deliveries heard, or ten seconds of nothing more.
async fn settle(tally: &Tally, expected: u64) {
    let mut quiet_since = Instant::now();
    let mut last = 0;
    while tally.received.load(Ordering::Relaxed) < expected && quiet_since.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = tally.received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
}

/// Redis's command counts so far: (`PUBLISH`es, every command but `INFO`).
async fn redis_commands(addr: &str) -> anyhow::Result<(u64, u64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut redis = tokio::net::TcpStream::connect(addr).await.context("connecting to Redis")?;
    redis.write_all(b"INFO commandstats\r\nQUIT\r\n").await?;
    let mut reply = String::new();
    redis.read_to_string(&mut reply).await?;
    let (mut publishes, mut all) = (0, 0);
    for line in reply.lines() {
        let Some((name, stats)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else { continue };
        let calls: u64 =
            stats.split(',').find_map(|field| field.strip_prefix("calls=")).and_then(|n| n.parse().ok()).unwrap_or(0);
        if name == "info" {
            continue;
        }
        if name == "publish" {
            publishes = calls;
        }
        all += calls;
    }
    Ok((publishes, all))
}

async fn cross_node(args: &RunArgs, results: &mut Results) -> anyhow::Result<()> {
    let peer = args.peer.as_deref().context("--peer: the cluster's other node")?;
    let redis = args.redis.as_deref().context("--redis: the cluster's Redis")?;
    let messages = args.messages;
    let here = Arc::new(Tally::new(args.subscribers, messages));
    let there = Arc::new(Tally::new(args.subscribers, messages));
    connect_all(&args.target, args.subscribers, Some(CHAT_ROOM), &here).await?;
    connect_all(peer, args.subscribers, Some(CHAT_ROOM), &there).await?;
    let (publishes_before, commands_before) = redis_commands(redis).await?;
    let errors = Arc::new(AtomicU64::new(0));
    let first = Instant::now();
    chat(args, messages, &errors).await?;
    let expected = (args.subscribers * messages) as u64;
    settle(&there, expected).await;
    settle(&here, expected).await;
    let (publishes_after, commands_after) = redis_commands(redis).await?;
    let (unique, duplicated, lost) = there.check();
    results.deliveries = unique;
    results.duplicated = duplicated + here.check().1;
    results.lost = lost;
    results.local_lost = here.check().2;
    results.publish_errors = errors.load(Ordering::Relaxed);
    let last_at = there.last_at.lock().unwrap().unwrap_or(first);
    results.deliveries_per_sec = unique as f64 / last_at.duration_since(first).as_secs_f64().max(1e-3);
    (results.p50_ms, results.p99_ms) = there.p50_p99();
    (results.local_p50_ms, results.local_p99_ms) = here.p50_p99();
    let sent = messages.max(1) as f64;
    results.redis_publishes_per_message = publishes_after.saturating_sub(publishes_before) as f64 / sent;
    results.redis_commands_per_message = commands_after.saturating_sub(commands_before) as f64 / sent;
    Ok(())
}

/// The table: a row per scenario and size, each figure for Herald and the
/// floor and their ratio.
fn report(file: &PathBuf) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut rows: BTreeMap<(Scenario, usize, usize), BTreeMap<ServerKind, Results>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let result: Results = serde_json::from_str(line)?;
        let (Some(scenario), Some(server)) = (result.scenario, result.server) else { continue };
        rows.entry((scenario, result.subscribers, result.messages)).or_default().insert(server, result);
    }
    println!(
        "{:<8} {:>6} {:>5} | {:>22} | {:>22} | {:>22} | {:>22} | {:>20} | {:>11}",
        "scenario",
        "subs",
        "msgs",
        "deliveries/s H/F (×)",
        "p50 ms H/F (×)",
        "p99 ms H/F (×)",
        "CPU µs/deliv H/F (×)",
        "KB/conn H/F (×)",
        "lost/dup H/F"
    );
    for ((scenario, subs, msgs), by_server) in &rows {
        if *scenario == Scenario::CrossNode {
            let Some(h) = by_server.get(&ServerKind::Herald) else { continue };
            println!(
                "cross-node, {subs} subscribers on each of 2 nodes, {msgs} sends: p50 {:.1} ms / p99 {:.1} ms on the \
                 other node, {:.1} / {:.1} ms on the sender's (×{:.2} / ×{:.2}); Redis: {:.2} PUBLISH and {:.2} \
                 commands per message; lost {} there / {} here, duplicated {}, refused {}",
                h.p50_ms,
                h.p99_ms,
                h.local_p50_ms,
                h.local_p99_ms,
                h.p50_ms / h.local_p50_ms.max(1e-3),
                h.p99_ms / h.local_p99_ms.max(1e-3),
                h.redis_publishes_per_message,
                h.redis_commands_per_message,
                h.lost,
                h.local_lost,
                h.duplicated,
                h.publish_errors,
            );
            continue;
        }
        let (Some(h), Some(f)) = (by_server.get(&ServerKind::Herald), by_server.get(&ServerKind::Floor)) else {
            continue;
        };
        let cell = |h: f64, f: f64| {
            let ratio = if f > 0.0 { format!("{:.2}", h / f) } else { "-".to_owned() };
            format!("{h:>8.1}/{f:<8.1} ({ratio})")
        };
        let name = format!("{scenario:?}").to_lowercase();
        println!(
            "{:<8} {:>6} {:>5} | {:>22} | {:>22} | {:>22} | {:>22} | {:>20} | {:>11}",
            name,
            subs,
            msgs,
            cell(h.deliveries_per_sec, f.deliveries_per_sec),
            cell(h.p50_ms, f.p50_ms),
            cell(h.p99_ms, f.p99_ms),
            cell(h.cpu_us_per_delivery, f.cpu_us_per_delivery),
            cell(h.kb_per_connection, f.kb_per_connection),
            format!("{}/{} {}/{}", h.lost, h.duplicated, f.lost, f.duplicated),
        );
        if h.publish_errors + f.publish_errors > 0 {
            println!(
                "{:<8} the server refused {} publishes or sends (Herald) / {} (floor): their deliveries count as lost",
                "", h.publish_errors, f.publish_errors
            );
        }
        if *scenario == Scenario::JoinStorm {
            println!(
                "{:<8} all {subs} joins answered in {:.2} s (Herald) / {:.2} s (floor); Herald read the store {} times; \
                 'lost' is joins refused",
                "", h.seconds_to_join, f.seconds_to_join, h.store_ops
            );
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let out = args.out.clone();
            let results = run(args).await?;
            let line = serde_json::to_string(&results)?;
            println!("{line}");
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&out)?;
            writeln!(file, "{line}")?;
            // Clients close with the process.
            std::process::exit(0);
        }
        Command::Report { file } => report(&file),
    }
}
