//! Test helpers: start the real server on port 0 against a MongoDB-compatible
//! server, with a fresh database per test.

#![allow(dead_code)] // each test binary uses a different part of this module

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

/// Starts Herald on 127.0.0.1:0 with a database of its own.
pub async fn spawn_app() -> TestApp {
    let uri = mongo_uri();
    let db_name = format!("test_{}", server::visitor::random_hex::<8>());
    let config = Config::from_lookup(|key| match key {
        "HERALD_ADDR" => Some("127.0.0.1:0".into()),
        "HERALD_MONGO_URI" => Some(uri.clone()),
        "HERALD_MONGO_DB" => Some(db_name.clone()),
        "HERALD_SECRET" => Some("integration-test-secret-of-32-chars!".into()),
        _ => None,
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

pub fn secret(value: &str) -> Secret {
    Secret::new(value)
}
