//! `GET /api/openapi.json`: the backend API described as OpenAPI 3.1, for
//! client generators and API consoles. `docs/PROTOCOL.md` says the same in
//! prose; a test checks that every `/api/` route the router serves is
//! described here.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A response with the API's error body.
fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description,
           "schema": {"type": "integer", "minimum": 0}})
}

fn json_body(schema: Value, required: bool) -> Value {
    json!({"required": required, "content": {"application/json": {"schema": schema}}})
}

/// The document.
pub fn document() -> Value {
    let mut document = operations();
    // Every call but a publish (which has its own rate) counts against the
    // key's HERALD_API_RATE; the description needs no key and is not counted.
    let over_rate = error("over the API key's rate for API calls (Retry-After)");
    if let Some(paths) = document["paths"].as_object_mut() {
        let counted = |path: &String| path != "/api/publish" && path != "/api/openapi.json";
        for (path, operations) in paths.iter_mut().filter(|(path, _)| counted(path)) {
            let Some(operations) = operations.as_object_mut() else { continue };
            for operation in operations.values_mut() {
                debug_assert!(operation["responses"].get("429").is_none(), "{path}");
                operation["responses"]["429"] = over_rate.clone();
            }
        }
    }
    document
}

/// Every operation, with the responses particular to it.
fn operations() -> Value {
    let room = path_param("room", "a room name: 1-64 characters of a-z, 0-9, '_' and '-'");
    let unauthorized = error("no valid API key (`Authorization: Bearer <key>`)");
    let settings = json!({"$ref": "#/components/schemas/RoomSettings"});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Herald server API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "What a backend asks of Herald: publish, history, presence, rooms, users. \
                            Every route needs one of HERALD_API_KEYS as a bearer token. See docs/PROTOCOL.md."
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/publish": {"post": {
                "summary": "Publish to everyone, to users, or to a room (stored, then delivered)",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false,
                                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,55}$"}}],
                "requestBody": json_body(json!({"$ref": "#/components/schemas/Publish"}), true),
                "responses": {
                    "200": ok("stored and delivered", json!({"type": "object"})),
                    "400": error("malformed body or header"),
                    "401": unauthorized,
                    "413": error("body or data too large"),
                    "422": error("invalid target, event or message"),
                    "429": error("over the API key's publish rate (Retry-After)"),
                    "503": error("storage unavailable or shutting down")
                }
            }},
            "/api/presence/{room}": {"get": {
                "summary": "Who is in a room, by user id",
                "parameters": [room],
                "responses": {
                    "200": ok("the room's roster", json!({"$ref": "#/components/schemas/Roster"})),
                    "401": unauthorized,
                    "404": error("not a room name"),
                    "503": error("presence unavailable")
                }
            }},
            "/api/rooms": {"get": {
                "summary": "Rooms with someone in them, on any node, with their counts",
                "responses": {
                    "200": ok("the rooms, by name (at most 1,000)", json!({
                        "type": "object", "required": ["rooms"],
                        "properties": {"rooms": {"type": "array", "items": {"$ref": "#/components/schemas/ActiveRoom"}}}
                    })),
                    "401": unauthorized,
                    "503": error("presence unavailable")
                }
            }},
            "/api/rooms/{room}/messages": {"get": {
                "summary": "A page of a room's history from MongoDB, oldest first",
                "parameters": [
                    room,
                    query_param("since", "only messages after this seq; the oldest first"),
                    query_param("before", "only messages before this seq; without since, the newest of them"),
                    {"name": "limit", "in": "query", "required": false,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}
                ],
                "responses": {
                    "200": ok("a page", json!({
                        "type": "object", "required": ["room", "head", "messages", "more"],
                        "properties": {
                            "room": {"type": "string"},
                            "head": {"type": "integer", "description": "the room's newest seq"},
                            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                            "more": {"type": "boolean", "description": "more lie beyond this page, the way it was read"}
                        }
                    })),
                    "400": error("invalid query"),
                    "401": unauthorized,
                    "404": error("not a room name"),
                    "503": error("storage unavailable")
                }
            }},
            "/api/rooms/{room}/messages/{seq}": {"delete": {
                "summary": "Remove a message: from MongoDB, then from every live page",
                "parameters": [room, path_param("seq", "the message's seq")],
                "responses": {
                    "200": ok("removed", json!({"type": "object", "properties": {
                        "room": {"type": "string"}, "seq": {"type": "integer"}, "removed": {"const": true}}})),
                    "401": unauthorized,
                    "404": error("no such room name or message"),
                    "503": error("storage unavailable")
                }
            }},
            "/api/rooms/{room}/settings": {
                "get": {
                    "summary": "A room's settings and whether it is private",
                    "parameters": [room],
                    "responses": {"200": ok("the settings", settings.clone()), "401": unauthorized,
                                  "404": error("not a room name")}
                },
                "put": {
                    "summary": "Replace a room's settings",
                    "parameters": [room],
                    "requestBody": json_body(json!({
                        "type": "object", "additionalProperties": false,
                        "properties": {
                            "private": {"type": ["boolean", "null"], "description": "null: as HERALD_PRIVATE_ROOMS says"},
                            "users": {"type": "array", "maxItems": 1000, "items": {"type": "string"}}
                        }
                    }), true),
                    "responses": {
                        "200": ok("stored", settings),
                        "400": error("not that JSON object"),
                        "401": unauthorized,
                        "404": error("not a room name"),
                        "422": error("an invalid user id, or too many"),
                        "503": error("storage unavailable")
                    }
                }
            },
            "/api/users/{user}/disconnect": {"post": {
                "summary": "Close a user's connections on every node; they are told `closing` with reason `disconnected`",
                "parameters": [path_param("user", "a user id")],
                "requestBody": json_body(json!({
                    "type": "object", "additionalProperties": false,
                    "properties": {"reason": {"type": "string", "maxLength": 200}}
                }), false),
                "responses": {
                    "200": ok("told", json!({"type": "object", "properties": {
                        "user": {"type": "string"},
                        "connections": {"type": "integer", "description": "the user's connections (approximate in a cluster)"}
                    }})),
                    "400": error("not that JSON object"),
                    "401": unauthorized,
                    "404": error("not a user id"),
                    "422": error("reason too long")
                }
            }},
            "/api/openapi.json": {"get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": ok("OpenAPI 3.1", json!({"type": "object"}))}
            }}
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "one of HERALD_API_KEYS"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "reason"],
                    "properties": {"code": {"type": "string"}, "reason": {"type": "string"},
                                   "retry_after_ms": {"type": "integer"}}
                }}},
                "Publish": {"type": "object", "additionalProperties": false, "properties": {
                    "broadcast": {"type": "boolean"}, "user": {"type": "string"},
                    "users": {"type": "array", "maxItems": 1000, "items": {"type": "string"}},
                    "room": {"type": "string"}, "data": {}, "message": {"type": "string"},
                    "event": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
                }},
                "Message": {"type": "object", "required": ["room", "seq", "client_id", "name", "body", "at_ms"],
                    "properties": {
                        "room": {"type": "string"}, "seq": {"type": "integer"}, "client_id": {"type": "string"},
                        "name": {"type": "string"}, "body": {"type": "string"}, "at_ms": {"type": "integer"},
                        "system": {"type": "boolean"}, "verified": {"type": "boolean"},
                        "user": {"type": "string", "description": "the signed-in sender's id"}
                    }},
                "Roster": {"type": "object", "properties": {
                    "room": {"type": "string"},
                    "users": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "name": {"type": "string"}}}},
                    "user_count": {"type": "integer"}, "anonymous": {"type": "integer"}
                }},
                "ActiveRoom": {"type": "object", "required": ["room", "user_count", "anonymous", "private"],
                    "properties": {"room": {"type": "string"}, "user_count": {"type": "integer"},
                                   "anonymous": {"type": "integer"}, "private": {"type": "boolean"}}},
                "RoomSettings": {"type": "object", "required": ["room", "private", "settings"], "properties": {
                    "room": {"type": "string"},
                    "private": {"type": "boolean", "description": "what the room is now"},
                    "settings": {"type": "object", "properties": {
                        "private": {"type": ["boolean", "null"]},
                        "users": {"type": "array", "items": {"type": "string"}},
                        "updated_ms": {"type": "integer"}
                    }}
                }}
            }
        }
    })
}

/// `GET /api/openapi.json` (no key needed: it describes, it serves nothing).
pub async fn openapi() -> Response {
    axum::Json(document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `(method, path)` the router serves under `/api/`, read from the
    /// router's own source.
    fn routes() -> Vec<(String, String)> {
        let source = include_str!("../startup.rs");
        let mut routes = Vec::new();
        for line in source.lines().map(str::trim).filter(|l| l.starts_with(".route(\"/api/")) {
            let path = line.split('"').nth(1).unwrap().to_owned();
            let handlers = &line[line.find(',').unwrap()..];
            for method in ["get", "post", "put", "delete", "patch"] {
                if handlers.contains(&format!("{method}(")) || handlers.contains(&format!(".{method}(")) {
                    routes.push((method.to_owned(), path.clone()));
                }
            }
        }
        routes
    }

    #[test]
    fn every_api_route_is_described_and_nothing_else_is() {
        let doc = document();
        let routes = routes();
        assert!(routes.len() >= 9, "the router's routes were read: {routes:?}");
        for (method, path) in &routes {
            let operation = &doc["paths"][path][method];
            assert!(operation.is_object(), "{method} {path} is not in /api/openapi.json");
            assert!(operation["responses"]["200"].is_object(), "{method} {path} describes its answer");
            if path != "/api/openapi.json" {
                assert!(operation["responses"]["401"].is_object(), "{method} {path} says it needs a key");
                assert!(operation["responses"]["429"].is_object(), "{method} {path} says it has a rate");
            }
        }
        let described: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(described, routes.len(), "every operation described is served");
    }

    #[test]
    fn every_reference_resolves() {
        fn refs(value: &Value, found: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        found.push(target.clone());
                    }
                    map.values().for_each(|v| refs(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
                _ => {}
            }
        }
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let name = target.strip_prefix("#/components/schemas/").expect("a local schema");
            assert!(doc["components"]["schemas"][name].is_object(), "{target} resolves");
        }
    }
}
