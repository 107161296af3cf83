//! What the gRPC port also serves over plain HTTP (HTTP/1.1 and HTTP/2, over the same TLS): the
//! IP-office dashboard page (`/dashboard/`, static files compiled into the binary, no CDN: the one
//! third-party file, the QR code generator, is vendored) and the read-only JSON API it calls with
//! the viewer's own token (`/api/…`, see `gateway`). Sharing the gRPC port gives the page the same
//! TLS, plaintext rule and address as the API.

pub mod gateway;

use crate::grpc::Api;
use crate::grpc::auth::Authenticate;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

/// What the HTTP routes share.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub api: Api,
    pub auth: Authenticate,
}

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const I18N_JS: &str = include_str!("dashboard/i18n.js");
const PLEDGES_JS: &str = include_str!("dashboard/pledges.js");
/// qrcode-generator 2.0.4 (MIT, its license at the top of the file): the certificate's QR code
/// is drawn in the page, so the dashboard still needs nothing from outside the binary.
const QRCODE_JS: &str = include_str!("dashboard/qrcode.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Only our own files and calls: no inline script, no third party, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard and the JSON API, to be merged with the gRPC services' router.
pub fn router(state: HttpState) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/dashboard/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/dashboard/i18n.js", get(|| async { asset("text/javascript; charset=utf-8", I18N_JS) }))
        .route("/dashboard/pledges.js", get(|| async { asset("text/javascript; charset=utf-8", PLEDGES_JS) }))
        .route("/dashboard/qrcode.js", get(|| async { asset("text/javascript; charset=utf-8", QRCODE_JS) }))
        .route("/dashboard/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/api/{service}/{method}", post(gateway::call))
        .layer(axum::extract::DefaultBodyLimit::max(gateway::BODY_BYTES_MAX))
        .with_state(state)
}
