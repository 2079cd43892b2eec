//! The real `herald` binary, started as operators start it, for tests that
//! need a process of its own (its exit, its logs, its memory).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::sio::WAIT;
use super::{API_KEY, TOKEN_SECRET};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
pub const CSRF_SECRET: &str = "ops-test-csrf-secret-of-32-characters";

/// The binary with an empty environment but `PATH`, killed when dropped.
pub fn herald() -> Command {
    let mut command = Command::new(HERALD);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).kill_on_drop(true);
    command
}

/// A running `herald serve` and its output lines.
pub struct Running {
    child: Child,
    pub addr: std::net::SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    /// Starts `herald serve` on a free port against database `db`, with
    /// `envs` over the test defaults.
    pub async fn start(db: &str, envs: &[(&str, &str)]) -> Self {
        let uri = std::env::var("HERALD_TEST_MONGO_URI").expect("HERALD_TEST_MONGO_URI");
        let mut child = herald()
            .envs([
                ("HERALD_ADDR", "127.0.0.1:0"),
                ("HERALD_MONGO_URI", uri.as_str()),
                ("HERALD_MONGO_DB", db),
                ("HERALD_SECRET", CSRF_SECRET),
                ("HERALD_TOKEN_SECRETS", TOKEN_SECRET),
                ("HERALD_API_KEYS", API_KEY),
                ("HERALD_SHUTDOWN_TIMEOUT", "3s"),
                ("HERALD_STORE_TIMEOUT", "30s"),
                ("LEPTOS_OUTPUT_NAME", "herald"),
            ])
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let _ = tx.send(line);
                }
            });
        }
        let mut seen = Vec::new();
        let addr = tokio::time::timeout(WAIT, async {
            loop {
                let line = lines.recv().await.expect("herald exited before listening");
                seen.push(line.clone());
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    return rest.split('"').next().unwrap().parse().unwrap();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("herald did not start: {seen:#?}"));
        Self { child, addr, lines, seen }
    }

    /// Sends SIGTERM; returns how long the exit took, and its status.
    pub async fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
        let pid = self.child.id().unwrap().to_string();
        let started = Instant::now();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.expect("exits").unwrap();
        let elapsed = started.elapsed();
        while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await {
            self.seen.push(line);
        }
        (elapsed, status)
    }
}

impl Running {
    /// Kills the process with SIGKILL (`kill -9`): nothing of it runs after.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// What the process printed so far (for a failure's message).
    pub fn output(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    /// The process's resident memory, in KiB (`VmRSS` in `/proc`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}
