//! The chart page (on the gateway's connection threads): `GET /` is a single HTML page that
//! reads history from `/fapi/v1/klines` and live klines from `/market/ws/<stream>`, drawn with
//! TradingView Lightweight Charts™ 4.2.3 (Apache-2.0), vendored under `assets/` with its
//! license and embedded in the binary, so the page works offline. Attribution: the chart's
//! `attributionLogo` option and the notice with a link in the page footer.

use crate::gateway::{GatewayContext, HttpRequest, HttpResponse, error_response};

/// The page.
pub const INDEX_HTML: &str = include_str!("assets/index.html");
/// The charting library (standalone production build).
pub const LIGHTWEIGHT_CHARTS_JS: &str =
    include_str!("assets/lightweight-charts-4.2.3/lightweight-charts.standalone.production.js");
/// Its license.
pub const LIGHTWEIGHT_CHARTS_LICENSE: &str =
    include_str!("assets/lightweight-charts-4.2.3/LICENSE");

/// `GET /`.
pub fn handle_page(_ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    HttpResponse::new(200, "text/html; charset=utf-8", INDEX_HTML.as_bytes())
        .with_header("Cache-Control", "no-cache")
}

/// `GET /assets/…`: the vendored library and its license.
pub fn handle_asset(_ctx: &GatewayContext, request: &HttpRequest) -> HttpResponse {
    let (content_type, body) = match request.path.as_str() {
        "/assets/lightweight-charts.standalone.production.js" => (
            "application/javascript; charset=utf-8",
            LIGHTWEIGHT_CHARTS_JS,
        ),
        "/assets/lightweight-charts.LICENSE.txt" => {
            ("text/plain; charset=utf-8", LIGHTWEIGHT_CHARTS_LICENSE)
        }
        _ => return error_response(404, -1000, "Path not found."),
    };
    HttpResponse::new(200, content_type, body.as_bytes())
        .with_header("Cache-Control", "public, max-age=86400")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_local_assets_and_attributes_the_library() {
        assert!(INDEX_HTML.contains("/assets/lightweight-charts.standalone.production.js"));
        assert!(!INDEX_HTML.contains("cdn"), "no CDN");
        assert!(INDEX_HTML.contains("attributionLogo: true"));
        assert!(INDEX_HTML.contains("https://www.tradingview.com/"));
        assert!(LIGHTWEIGHT_CHARTS_JS.contains("Lightweight Charts"));
        assert!(LIGHTWEIGHT_CHARTS_LICENSE.contains("Apache License"));
    }
}
