//! Throughput of the Redis queue through the real worker loop with a no-op handler.
//!
//! ```sh
//! cargo run --release -p worker --example queue_throughput -- --workers 1 --jobs 50000
//! ```
//!
//! The parent process enqueues (`--producers` concurrent tasks on one `RedisQueue`) and
//! measures; `--workers` child processes (this binary, `consume` mode) each run a
//! [`WorkerLoop`] with `--concurrency` slots and a handler that does nothing, so every job
//! costs exactly what the queue and the loop cost: enqueue → reserve → ack.
//!
//! Three phases, each on a fresh key prefix:
//! 1. **enqueue**: N jobs, no consumers;
//! 2. **drain**: N jobs already queued, the workers start on a signal;
//! 3. **end-to-end**: the workers are idle and waiting, then N jobs are enqueued while they
//!    consume; the clock stops when the last job is acked.
//!
//! Redis commands per job come from `INFO commandstats` before and after each phase (commands
//! inside Lua scripts are counted on their own lines; a round trip is one `EVALSHA` or one
//! pipeline). Other clients of the same Redis inflate the figures, so run it on an idle one.
//! Not part of `cargo test` (an example that is only built there).

// A benchmark program: any failure should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::{Parser, Subcommand};
use job_queue::{Envelope, Job, NewJob, QueueConfig, RedisQueue, ReliableQueue, SigningKey};
use serde::{Deserialize, Serialize};
use worker::{JobError, JobHandler, RunConfig, WorkerLoop};

const QUEUE: &str = NoopJob::QUEUE;
const KEY: &[u8] = b"queue-throughput-benchmark-signing-key-0123";

#[derive(Parser)]
struct Args {
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Jobs per phase.
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,
    /// Consumer processes.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Slots per consumer process.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Concurrent enqueue tasks in the parent.
    #[arg(long, default_value_t = 32)]
    producers: usize,
    /// Consumers log like `worker` does by default (JSON, info: one line per job, to
    /// /dev/null) and record metrics into the Prometheus recorder.
    #[arg(long)]
    production_telemetry: bool,
}

#[derive(Subcommand)]
enum Mode {
    /// Child process: run a worker loop on `prefix` after "go" arrives on stdin, until stdin
    /// closes.
    Consume {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        production_telemetry: bool,
    },
}

/// The benchmark's job: `{"n": …}`, doing nothing.
#[derive(Serialize, Deserialize)]
struct NoopJob {
    n: usize,
}

impl Job for NoopJob {
    const JOB_NAME: &'static str = "noop";
    const QUEUE: &'static str = "bench";
}

struct Noop;

#[async_trait]
impl JobHandler for Noop {
    type Job = NoopJob;

    async fn perform(&self, _job: NoopJob, _envelope: &Envelope) -> Result<(), JobError> {
        Ok(())
    }
}

async fn connect(url: &str, prefix: &str) -> RedisQueue {
    let key = SigningKey::new(KEY).expect("signing key");
    RedisQueue::connect(url, prefix, key, QueueConfig::default())
        .await
        .expect("Redis reachable")
}

async fn consume(url: &str, prefix: &str, concurrency: usize, production_telemetry: bool) {
    if production_telemetry {
        plumbing::cli::init_logs(
            plumbing::cli::LogFormat::Json,
            plumbing::cli::SERVICE_LOG_LEVEL,
        );
        worker::telemetry::install_prometheus().expect("recorder");
    }
    let queue: Arc<dyn ReliableQueue> = Arc::new(connect(url, prefix).await);
    let mut config = RunConfig::new("bench", QUEUE);
    config.concurrency = concurrency;
    config.reserve_wait = Duration::from_secs(1);
    config.shutdown_grace = Duration::from_secs(5);
    queue.ping().await.expect("ping");
    println!("ready");
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // stdin: "go" starts the loop; end of input stops it.
    std::thread::spawn(move || {
        let mut lines = std::io::stdin().lock().lines();
        if matches!(lines.next(), Some(Ok(line)) if line == "go") {
            let _ = go_tx.send(());
        }
        for _ in lines.by_ref() {}
        let _ = stop_tx.send(());
    });
    if go_rx.await.is_err() {
        return;
    }
    let summary = WorkerLoop::new(queue, Arc::new(Noop), config)
        .run(async {
            let _ = stop_rx.await;
        })
        .await
        .expect("worker loop");
    eprintln!("consumer {}: {summary:?}", std::process::id());
}

struct Consumers {
    children: Vec<(Child, Option<ChildStdin>)>,
}

impl Consumers {
    /// Starts the processes and waits until each is connected.
    fn spawn(args: &Args, prefix: &str) -> Consumers {
        let exe = std::env::current_exe().expect("current exe");
        let mut children = Vec::new();
        for _ in 0..args.workers {
            let mut child = Command::new(&exe)
                .args([
                    "--redis-url",
                    &args.redis_url,
                    "consume",
                    "--prefix",
                    prefix,
                ])
                .args(["--concurrency", &args.concurrency.to_string()])
                .args(
                    args.production_telemetry
                        .then_some("--production-telemetry"),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(if args.production_telemetry {
                    Stdio::null()
                } else {
                    Stdio::inherit()
                })
                .spawn()
                .expect("spawn consumer");
            let stdout = child.stdout.take().expect("stdout");
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("consumer ready");
            assert_eq!(line.trim(), "ready");
            let stdin = child.stdin.take();
            children.push((child, stdin));
        }
        Consumers { children }
    }

    fn go(&mut self) {
        for (_, stdin) in &mut self.children {
            if let Some(stdin) = stdin {
                stdin.write_all(b"go\n").expect("go");
                stdin.flush().expect("flush");
            }
        }
    }

    /// Closes stdin (graceful stop) and waits for the processes.
    fn stop(mut self) {
        for (_, stdin) in &mut self.children {
            stdin.take();
        }
        for (child, _) in &mut self.children {
            let _ = child.wait();
        }
    }
}

async fn enqueue_all(queue: &RedisQueue, jobs: usize, producers: usize) {
    let per_task = jobs.div_ceil(producers);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..producers {
        let queue = queue.clone();
        let count = per_task.min(jobs.saturating_sub(task * per_task));
        tasks.spawn(async move {
            for n in 0..count {
                let job = NewJob::typed(&NoopJob { n }).expect("encode");
                queue.enqueue_job(QUEUE, job).await.expect("enqueue");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("producer");
    }
}

/// Waits until every job of the phase was acked (no pending ids left); returns the number of
/// polls (each one `HLEN`).
async fn wait_drained(redis: &mut redis::aio::MultiplexedConnection, prefix: &str) -> u64 {
    let ids = format!("{prefix}:{QUEUE}:ids");
    let mut polls = 0;
    loop {
        polls += 1;
        let pending: u64 = redis::cmd("HLEN")
            .arg(&ids)
            .query_async(redis)
            .await
            .expect("HLEN");
        if pending == 0 {
            return polls;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn command_stats(redis: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .next()?
                .strip_prefix("calls=")?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn per_job(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    jobs: usize,
    skip: &[(&str, u64)],
) -> String {
    let mut parts = Vec::new();
    for (name, calls) in after {
        let mut delta = calls - before.get(name).copied().unwrap_or(0);
        for (skip_name, skip_calls) in skip {
            if name == skip_name {
                delta = delta.saturating_sub(*skip_calls);
            }
        }
        if delta as f64 / jobs as f64 >= 0.01 {
            parts.push(format!("{name} {:.2}", delta as f64 / jobs as f64));
        }
    }
    parts.join(", ")
}

async fn cleanup(redis: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(redis)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(redis)
            .await
            .expect("DEL");
    }
}

fn rate(jobs: usize, elapsed: Duration) -> String {
    format!(
        "{:>8.0} jobs/s  ({} jobs in {:.3} s)",
        jobs as f64 / elapsed.as_secs_f64(),
        jobs,
        elapsed.as_secs_f64()
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(Mode::Consume {
        prefix,
        concurrency,
        production_telemetry,
    }) = &args.mode
    {
        consume(&args.redis_url, prefix, *concurrency, *production_telemetry).await;
        return;
    }
    let client = redis::Client::open(args.redis_url.as_str()).expect("Redis URL");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis reachable");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let run = &run[..8];
    println!(
        "jobs {} | worker processes {} x {} slots | producers {} | production telemetry {}",
        args.jobs, args.workers, args.concurrency, args.producers, args.production_telemetry
    );

    // 1. enqueue only
    let prefix = format!("bench:{run}:enqueue");
    let queue = connect(&args.redis_url, &prefix).await;
    queue.ping().await.expect("ping");
    let before = command_stats(&mut redis).await;
    let started = Instant::now();
    enqueue_all(&queue, args.jobs, args.producers).await;
    let elapsed = started.elapsed();
    let after = command_stats(&mut redis).await;
    println!("enqueue     {}", rate(args.jobs, elapsed));
    println!(
        "            commands/job: {}",
        per_job(&before, &after, args.jobs, &[("info", 1)])
    );
    cleanup(&mut redis, &prefix).await;

    // 2. drain a full queue
    let prefix = format!("bench:{run}:drain");
    let queue = connect(&args.redis_url, &prefix).await;
    enqueue_all(&queue, args.jobs, args.producers).await;
    let mut consumers = Consumers::spawn(&args, &prefix);
    let before = command_stats(&mut redis).await;
    let started = Instant::now();
    consumers.go();
    let polls = wait_drained(&mut redis, &prefix).await;
    let elapsed = started.elapsed();
    let after = command_stats(&mut redis).await;
    consumers.stop();
    println!("drain       {}", rate(args.jobs, elapsed));
    println!(
        "            commands/job: {}",
        per_job(&before, &after, args.jobs, &[("info", 1), ("hlen", polls)])
    );
    cleanup(&mut redis, &prefix).await;

    // 3. end to end
    let prefix = format!("bench:{run}:e2e");
    let queue = connect(&args.redis_url, &prefix).await;
    queue.ping().await.expect("ping");
    let mut consumers = Consumers::spawn(&args, &prefix);
    consumers.go();
    let before = command_stats(&mut redis).await;
    let started = Instant::now();
    enqueue_all(&queue, args.jobs, args.producers).await;
    let enqueued = started.elapsed();
    let polls = wait_drained(&mut redis, &prefix).await;
    let elapsed = started.elapsed();
    let after = command_stats(&mut redis).await;
    consumers.stop();
    println!(
        "end-to-end  {}  (enqueueing took {:.3} s)",
        rate(args.jobs, elapsed),
        enqueued.as_secs_f64()
    );
    println!(
        "            commands/job: {}",
        per_job(&before, &after, args.jobs, &[("info", 1), ("hlen", polls)])
    );
    cleanup(&mut redis, &prefix).await;
}
