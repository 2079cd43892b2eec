//! The `herald` binary as operators run it: `--help`, configuration errors
//! that name the key, JSON logs without secrets, and a graceful shutdown on
//! SIGTERM that tells clients why and exits within its deadline.

use std::time::Duration;

use crate::common::process::Running;
use crate::common::sio::SioClient;
use crate::common::{API_KEY, TOKEN_SECRET, token};
use serde_json::{Value, json};
use tokio::process::Command;

const CSRF_SECRET: &str = crate::common::process::CSRF_SECRET;

fn herald() -> Command {
    crate::common::process::herald()
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

#[tokio::test]
async fn json_logs_hold_no_secrets_and_sigterm_says_goodbye_and_exits_in_time() {
    let db = format!("test_ops_{}", std::process::id());
    let mut herald = Running::start(&db, &[("HERALD_LOG_FORMAT", "json"), ("RUST_LOG", "debug")]).await;
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
