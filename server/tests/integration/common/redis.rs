//! A real `redis-server` (Debian's package, `scripts/setup.sh`) for one
//! test: a free port, no persistence, stopped when dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running Redis.
pub struct RedisServer {
    pub port: u16,
    /// Killed when the test is done with it.
    child: Child,
}

impl RedisServer {
    /// Starts one on a port that was free a moment ago, and returns once it
    /// says it accepts connections (trying another port if that one was
    /// taken meanwhile).
    pub async fn start() -> Self {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if let Some(child) = Self::spawn(port).await {
                return Self { port, child };
            }
        }
        panic!("redis-server did not start");
    }

    /// Kills it (SIGKILL, as a crash would: every connection drops, all
    /// its data is gone).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts a new one on the same port, empty.
    pub async fn start_again(&mut self) {
        self.child = Self::spawn(self.port).await.expect("redis-server starts again on its port");
    }

    async fn spawn(port: u16) -> Option<Child> {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (scripts/setup.sh installs it)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            let _ = child.kill().await;
            return None;
        }
        // Keep reading its log, or it blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(child)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
