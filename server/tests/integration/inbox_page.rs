//! The notifications page, without JavaScript.

use crate::common::{API_KEY, TOKEN_SECRET, form_field, spawn_app, token};
use mongodb::bson::{Document, doc};
use serde_json::json;

#[tokio::test]
async fn the_inbox_page_lists_notifications_and_marks_them_read_by_form() {
    let app = spawn_app().await;
    for text in ["first", "second"] {
        let response = app
            .http
            .post(app.url("/api/publish"))
            .bearer_auth(API_KEY)
            .json(&json!({"user": "63", "message": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let session = format!("herald_session={}", token(TOKEN_SECRET, "63", Some("Alice"), 600));
    let (_, html, cookies) = app.get_page("/notifications", Some(&session)).await;
    assert!(html.contains("first") && html.contains("second"), "both listed");
    assert!(html.find("second") < html.find("first"), "newest first");
    assert!(html.contains(">2</span> unread") || html.contains("data-testid=\"unread-count\">2<"), "count shown");

    let visitor = cookies.iter().find(|c| c.starts_with("herald_vid=")).unwrap();
    let cookie = format!("{session}; {visitor}");
    let (_, html, _) = app.get_page("/notifications", Some(&cookie)).await;
    let csrf = form_field(&html, "csrf");
    let response = app
        .http
        .post(app.url("/notifications/read"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("seq", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let unread = |app: &crate::common::TestApp| {
        let notes = app.db.collection::<Document>("notifications");
        async move { notes.count_documents(doc! {"read": false}).await.unwrap() }
    };
    assert_eq!(unread(&app).await, 1);

    let forged = app
        .http
        .post(app.url("/notifications/read"))
        .header("cookie", &cookie)
        .form(&[("csrf", "forged"), ("all", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(unread(&app).await, 1, "a forged form changes nothing");

    app.http
        .post(app.url("/notifications/read"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("all", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(unread(&app).await, 0);

    let (_, anonymous, _) = app.get_page("/notifications", None).await;
    assert!(anonymous.contains("Log in to see your notifications"));
}

#[tokio::test]
async fn notifications_stored_before_idempotency_keys_still_let_herald_start() {
    let uri = std::env::var("HERALD_TEST_MONGO_URI").expect("HERALD_TEST_MONGO_URI");
    let name = format!("test_legacy_{}", server::ids::random_hex::<8>());
    let db = mongodb::Client::with_uri_str(&uri).await.unwrap().database(&name);
    let legacy = |seq: i64| {
        doc! {
            "key": "inbox:63", "seq": seq, "event": "notification", "data": "\"old\"",
            "at": mongodb::bson::DateTime::now(), "read": false,
            "expires_at": mongodb::bson::DateTime::from_millis(4_102_444_800_000), // 2100
        }
    };
    let notifications = db.collection::<Document>("notifications");
    notifications.insert_many([legacy(1), legacy(2)]).await.unwrap();

    let _app = crate::common::spawn_app_with(&[("HERALD_MONGO_DB", &name)]).await;
    let without_key = notifications.count_documents(doc! {"idem": {"$exists": false}}).await.unwrap();
    assert_eq!(without_key, 0, "every old notification got a key, and the unique index was built");
    assert_eq!(notifications.count_documents(doc! {}).await.unwrap(), 2);
}
