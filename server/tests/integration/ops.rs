//! The `herald` binary as operators run it: `--help`, configuration errors
//! that name the key, JSON logs without secrets, and a graceful shutdown on
//! SIGTERM that tells clients why and exits within its deadline.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::sio::{SioClient, WAIT};
use crate::common::{API_KEY, TOKEN_SECRET, token};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const CSRF_SECRET: &str = "ops-test-csrf-secret-of-32-characters";

fn herald() -> Command {
    let mut command = Command::new(HERALD);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).kill_on_drop(true);
    command
}

#[tokio::test]
async fn help_lists_the_commands_and_the_config_flag() {
    let output = herald().arg("--help").output().await.unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in ["serve", "token", "--config"] {
        assert!(help.contains(expected), "{expected} missing from\n{help}");
    }
}

#[tokio::test]
async fn invalid_configuration_stops_start_up_with_the_key_named() {
    let bad_env = herald().env("HERALD_SEND_RATE", "fast").output().await.unwrap();
    assert!(!bad_env.status.success());
    let stderr = String::from_utf8_lossy(&bad_env.stderr);
    assert!(stderr.contains("HERALD_SEND_RATE") && stderr.contains("whole number"), "{stderr}");

    let dir = std::env::temp_dir().join(format!("herald-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("herald.toml");
    std::fs::write(&file, "send_rate = 5\nsned_burst = 9\n").unwrap();
    let bad_file = herald().arg("--config").arg(&file).output().await.unwrap();
    assert!(!bad_file.status.success());
    let stderr = String::from_utf8_lossy(&bad_file.stderr);
    assert!(stderr.contains("HERALD_SNED_BURST") && stderr.contains("unknown key"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A running `herald serve` and its output lines.
struct Running {
    child: Child,
    addr: std::net::SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Running {
    async fn start(db: &str) -> Self {
        let uri = std::env::var("HERALD_TEST_MONGO_URI").expect("HERALD_TEST_MONGO_URI");
        let mut child = herald()
            .envs([
                ("HERALD_ADDR", "127.0.0.1:0"),
                ("HERALD_MONGO_URI", uri.as_str()),
                ("HERALD_MONGO_DB", db),
                ("HERALD_SECRET", CSRF_SECRET),
                ("HERALD_TOKEN_SECRETS", TOKEN_SECRET),
                ("HERALD_API_KEYS", API_KEY),
                ("HERALD_LOG_FORMAT", "json"),
                ("HERALD_SHUTDOWN_TIMEOUT", "3s"),
                ("HERALD_STORE_TIMEOUT", "30s"),
                ("RUST_LOG", "debug"),
                ("LEPTOS_OUTPUT_NAME", "herald"),
            ])
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
    async fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
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

#[tokio::test]
async fn json_logs_hold_no_secrets_and_sigterm_says_goodbye_and_exits_in_time() {
    let db = format!("test_ops_{}", std::process::id());
    let mut herald = Running::start(&db).await;
    let base = format!("http://{}", herald.addr);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // Traffic that carries every kind of secret: a login link with a token,
    // a socket token, API keys right and wrong, a forged token.
    let user_token = token(TOKEN_SECRET, "ops-user", Some("Ops"), 600);
    let login = http.get(format!("{base}/login?token={user_token}")).send().await.unwrap();
    assert!(login.status().is_redirection(), "{}", login.status());
    let mut client = SioClient::try_connect(herald.addr, Some(json!({"token": user_token})), None).await.unwrap();
    let forged = token("not-the-secret-not-the-secret-not-the-secret", "ops-user", None, 600);
    assert!(SioClient::try_connect(herald.addr, Some(json!({"token": forged})), None).await.is_err());
    let wrong_key = "wrong-api-key-that-must-not-be-logged";
    for key in [API_KEY, wrong_key] {
        http.post(format!("{base}/api/publish"))
            .bearer_auth(key)
            .json(&json!({"user": "ops-user", "message": "hi"}))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(client.next_event("notification").await["data"], "hi");
    let ack = client.call("send", &json!({"room": "lobby", "client_id": "ops-msg-1", "name": "x", "body": "hi"})).await;
    assert!(ack.get("ok").is_some(), "{ack}");

    let (elapsed, status) = herald.terminate().await;
    assert!(status.success(), "exit status {status}");
    assert!(elapsed < Duration::from_secs(3 + 2), "exited {elapsed:?} after SIGTERM (deadline 3 s)");
    let closing = client.next_event("closing").await;
    assert_eq!(closing["reason"], "shutting_down", "{closing}");
    client.closed().await;

    let log = herald.seen.join("\n");
    for line in &herald.seen {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert!(parsed["level"].is_string() && parsed["timestamp"].is_string(), "{line}");
    }
    assert!(log.contains(r#""sid":"#), "connection spans carry the socket id");
    assert!(log.contains("closing live connections"), "the shutdown closed the sockets itself");
    assert!(log.contains(r#""path":"/api/publish""#), "request spans carry the path");
    for secret in [TOKEN_SECRET, API_KEY, CSRF_SECRET, wrong_key, user_token.as_str(), forged.as_str()] {
        assert!(!log.contains(secret), "a secret appears in the log");
    }
}
