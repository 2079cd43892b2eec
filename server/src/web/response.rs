//! The plain answers of the no-JavaScript forms and links: a minimal HTML
//! page for an outcome that has no page of its own, and the `303 See Other`
//! that sends the browser on after a post.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// A minimal HTML page for outcomes of plain forms (login, logout, marking
/// read) that have no page of their own to show an error on.
pub(crate) fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>{title} · Herald</title>\
         <link rel=\"stylesheet\" href=\"/pkg/herald.css\"></head><body><main class=\"plain-page\">\
         <h1>{title}</h1><p>{text}</p><p><a href=\"/\">Go to the lobby</a></p></main></body></html>",
        title = escape(title),
        text = escape(text)
    );
    (status, Html(html)).into_response()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The answer to a plain form post whose CSRF token does not check out.
pub(crate) fn expired_form(title: &str) -> Response {
    page(StatusCode::FORBIDDEN, title, "This form has expired: go back, reload and try again.")
}

/// `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_owned())]).into_response()
}

/// `303 See Other` to `location`, setting a cookie (a
/// [`crate::http::cookies`] value).
pub(crate) fn redirect_with_cookie(location: &str, cookie: HeaderValue) -> Response {
    let mut response = see_other(location);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
