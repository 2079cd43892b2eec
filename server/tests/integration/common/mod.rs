//! Test helpers: start the real server on port 0 against a MongoDB-compatible
//! server, with a fresh database per test.

pub mod process;
pub mod proxy;
pub mod redis;
pub mod sio;

use std::net::SocketAddr;

use leptos::config::LeptosOptions;
use mongodb::bson::{Document, doc};
use server::config::{Config, Secret};
use server::startup::Application;

/// A running Herald and a handle on its database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: mongodb::Database,
    pub http: reqwest::Client,
}

fn mongo_uri() -> String {
    std::env::var("HERALD_TEST_MONGO_URI").expect(
        "HERALD_TEST_MONGO_URI must point at a MongoDB-compatible server (scripts/test.sh starts SecantusDB and sets it)",
    )
}

/// The token secret test servers are configured with.
pub const TOKEN_SECRET: &str = "test-token-secret-test-token-secret-01";
/// The publish API key test servers are configured with.
pub const API_KEY: &str = "test-api-key-0123456789";

/// Starts Herald on 127.0.0.1:0 with a database of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Like [`spawn_app`], with some settings overridden.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_in(&fresh_db(), overrides).await
}

/// A fresh database's name, for [`spawn_app_in`].
pub fn fresh_db() -> String {
    format!("test_{}", server::ids::random_hex::<8>())
}

/// Sends the servers' logs (warnings, or what `RUST_LOG` asks for) to the
/// test's own output, which the harness prints when the test fails.
fn capture_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// Like [`spawn_app_with`], on the database `db_name` (another node of the
/// same cluster shares it).
pub async fn spawn_app_in(db_name: &str, overrides: &[(&str, &str)]) -> TestApp {
    capture_logs();
    let uri = mongo_uri();
    let db_name = db_name.to_owned();
    let config = Config::from_lookup(|key| {
        if let Some((_, value)) = overrides.iter().find(|(k, _)| *k == key) {
            return Some((*value).to_owned());
        }
        match key {
            "HERALD_ADDR" => Some("127.0.0.1:0".into()),
            "HERALD_MONGO_URI" => Some(uri.clone()),
            "HERALD_MONGO_DB" => Some(db_name.clone()),
            "HERALD_SECRET" => Some("integration-test-secret-of-32-chars!".into()),
            "HERALD_TOKEN_SECRETS" => Some(TOKEN_SECRET.into()),
            "HERALD_API_KEYS" => Some(API_KEY.into()),
            // Tests send as fast as acks come back, and connect many
            // clients from one address; the rate limits and caps have their
            // own tests, which set them.
            "HERALD_SEND_RATE"
            | "HERALD_PUBLISH_RATE"
            | "HERALD_API_RATE"
            | "HERALD_EVENT_RATE"
            | "HERALD_HANDSHAKES_PER_IP" => Some("0".into()),
            // Presence changes are told at once, or nearly: tests wait for them.
            "HERALD_PRESENCE_INTERVAL" => Some("100ms".into()),
            // SecantusDB (a Python stand-in for MongoDB) can stall for
            // seconds on a loaded machine, most of all when cold; these tests
            // are not about the store bound (the Playwright outage tests are).
            "HERALD_STORE_TIMEOUT" => Some("30s".into()),
            "HERALD_REQUEST_TIMEOUT" => Some("60s".into()),
            _ => None,
        }
    })
    .expect("test config is valid");
    let options = LeptosOptions::builder().output_name("herald").build();
    let app = Application::build(config, options).await.expect("Herald starts");
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let client = mongodb::Client::with_uri_str(&uri).await.expect("test MongoDB client");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("HTTP client");
    TestApp { addr, db: client.database(&db_name), http }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn count_messages(&self, filter: Document) -> u64 {
        self.db.collection::<Document>("messages").count_documents(filter).await.expect("count")
    }

    pub async fn count_all(&self) -> u64 {
        self.count_messages(doc! {}).await
    }

    /// The sequence numbers stored in `room` (collection `messages`),
    /// ascending.
    pub async fn room_seqs(&self, room: &str) -> Vec<u64> {
        self.seqs("messages", doc! {"room": room}).await
    }

    /// The sequence numbers stored in `user`'s inbox (collection
    /// `notifications`, key `inbox:<user>`), ascending.
    pub async fn inbox_seqs(&self, user: &str) -> Vec<u64> {
        self.seqs("notifications", doc! {"key": format!("inbox:{user}")}).await
    }

    async fn seqs(&self, collection: &str, filter: Document) -> Vec<u64> {
        use futures::TryStreamExt;
        let docs: Vec<Document> = self
            .db
            .collection::<Document>(collection)
            .find(filter)
            .projection(doc! {"_id": 0, "seq": 1})
            .sort(doc! {"seq": 1})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read");
        docs.iter()
            .map(|d| {
                let seq = d.get("seq").and_then(|s| s.as_i64().or_else(|| s.as_i32().map(i64::from)));
                u64::try_from(seq.unwrap_or_else(|| panic!("no whole seq in {collection} document {d}"))).unwrap()
            })
            .collect()
    }

    /// A page's HTML and the `Set-Cookie` pairs it sent.
    pub async fn get_page(&self, path: &str, cookie: Option<&str>) -> (u16, String, Vec<String>) {
        let mut request = self.http.get(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("GET");
        let status = response.status().as_u16();
        let cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect();
        (status, response.text().await.expect("body"), cookies)
    }
}

/// Pulls `name="<field>" value="<value>"` out of server-rendered HTML.
pub fn form_field(html: &str, field: &str) -> String {
    let marker = format!("name=\"{field}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {field} field in page")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// A token for `user` signed with `secret`, valid for `ttl_secs` (negative:
/// already expired).
pub fn token(secret: &str, user: &str, name: Option<&str>, ttl_secs: i64) -> String {
    let tokens = server::auth::tokens::Tokens::new(&[Secret::new(secret)], None);
    if ttl_secs > 0 {
        let name = name.map(|n| herald::DisplayName::parse(n).unwrap());
        let user = herald::UserId::parse(user).unwrap();
        tokens.issue(&user, name.as_ref(), std::time::Duration::from_secs(ttl_secs as u64)).unwrap()
    } else {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let claims = serde_json::json!({"sub": user, "exp": now + ttl_secs});
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .unwrap()
    }
}

/// A token for `user` whose `rooms` claim grants `rooms` (patterns).
pub fn token_with_rooms(user: &str, rooms: &[&str]) -> String {
    let tokens = server::auth::tokens::Tokens::new(&[Secret::new(TOKEN_SECRET)], None);
    let rooms = herald::room::RoomPatterns::parse(rooms).unwrap();
    let user = herald::UserId::parse(user).unwrap();
    tokens.issue_with_rooms(&user, None, &rooms, std::time::Duration::from_secs(600)).unwrap()
}

/// Reads from a raw connection until the server closes it, or fails the test
/// after [`sio::WAIT`]. Returns everything read.
pub async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    String::from_utf8_lossy(&read_bytes_until_closed(stream).await).into_owned()
}

/// [`read_until_closed`], as bytes.
pub async fn read_bytes_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(sio::WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server closes the connection");
    received
}

/// The value of the `/metrics` line starting with `line_prefix` on the
/// server at `base` (`http://host:port`).
pub async fn metric_at(http: &reqwest::Client, base: &str, line_prefix: &str) -> u64 {
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(line_prefix).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {line_prefix} in /metrics:\n{text}"))
}

/// [`metric_at`] of a test server.
pub async fn metric(app: &TestApp, line_prefix: &str) -> u64 {
    metric_at(&app.http, &format!("http://{}", app.addr), line_prefix).await
}
