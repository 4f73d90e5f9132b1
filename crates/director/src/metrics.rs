//! Prometheus metrics, rendered on each scrape of the admin listener's
//! `/metrics`.
//!
//! The request path counts with plain atomics (the same ones the JSON API
//! reads); a scrape copies them into a fresh `sticky_metrics` recorder
//! and renders it through its handle. So the request path pays no registry lookups, no global recorder is installed (several
//! directors can live in one process, as in tests), and servers removed
//! by a reload disappear from the output.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Key, Label, Level, Metadata, Recorder, SharedString, Unit};

use crate::state::State;
use crate::status::ServerState;

const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

struct Writer {
    recorder: sticky_metrics::Recorder,
}

impl Writer {
    fn describe(&self, name: &'static str, help: &'static str, counter: bool) {
        let help = SharedString::const_str(help);
        if counter {
            self.recorder
                .describe_counter(name.into(), None::<Unit>, help);
        } else {
            self.recorder
                .describe_gauge(name.into(), None::<Unit>, help);
        }
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, String)], value: u64) {
        let key = key(name, labels);
        self.recorder.register_counter(&key, &META).absolute(value);
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, String)], value: f64) {
        let key = key(name, labels);
        self.recorder.register_gauge(&key, &META).set(value);
    }
}

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.clone()))
        .collect();
    Key::from_parts(name, labels)
}

/// The Prometheus text exposition of the director's figures.
pub(crate) fn render(shared: &State) -> String {
    let w = Writer {
        recorder: sticky_metrics::Recorder::new(),
    };
    let s = &shared.stats;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let none: &[(&'static str, String)] = &[];

    w.describe(
        "sticky_director_requests_total",
        "Client requests received.",
        true,
    );
    w.counter("sticky_director_requests_total", none, load(&s.requests));
    w.describe(
        "sticky_director_responses_total",
        "Responses sent to clients, by status class.",
        true,
    );
    for (i, n) in s.responses.iter().enumerate() {
        w.counter(
            "sticky_director_responses_total",
            &[("class", format!("{}xx", i + 1))],
            load(n),
        );
    }
    w.describe(
        "sticky_director_gateway_errors_total",
        "Requests the director answered itself with 502, 503 or 504.",
        true,
    );
    w.counter(
        "sticky_director_gateway_errors_total",
        none,
        load(&s.gateway_errors),
    );
    w.describe(
        "sticky_director_failovers_total",
        "Requests routed away from the server their route cookie named.",
        true,
    );
    w.counter("sticky_director_failovers_total", none, load(&s.failovers));
    w.describe(
        "sticky_director_retries_total",
        "Requests re-sent after a refused connection or a failed attempt.",
        true,
    );
    w.counter("sticky_director_retries_total", none, load(&s.retries));
    w.describe(
        "sticky_director_reserved_path_rejections_total",
        "Client requests to /.sticky/ answered 404.",
        true,
    );
    w.counter(
        "sticky_director_reserved_path_rejections_total",
        none,
        load(&s.reserved_rejected),
    );
    w.describe(
        "sticky_director_fast_path_requests_total",
        "Client requests forwarded by the fast path (plain HTTP/1.1, no hyper).",
        true,
    );
    w.counter(
        "sticky_director_fast_path_requests_total",
        none,
        load(&s.fast_path_requests),
    );
    w.describe(
        "sticky_director_fast_path_handovers_total",
        "Client connections the fast path handed to the general (hyper) path.",
        true,
    );
    w.counter(
        "sticky_director_fast_path_handovers_total",
        none,
        load(&s.handovers),
    );
    w.describe(
        "sticky_director_h2_raw_requests_total",
        "HTTP/2 requests forwarded on the fast path's raw HTTP/1.1 connections (no hyper client).",
        true,
    );
    w.counter(
        "sticky_director_h2_raw_requests_total",
        none,
        load(&s.h2_raw_requests),
    );
    w.describe(
        "sticky_director_tls_handshake_failures_total",
        "TLS handshakes on the public listener that failed or timed out.",
        true,
    );
    w.counter(
        "sticky_director_tls_handshake_failures_total",
        none,
        load(&s.tls_handshake_failed),
    );
    w.describe(
        "sticky_director_http2_connections_total",
        "TLS client connections that chose HTTP/2 by ALPN.",
        true,
    );
    w.counter(
        "sticky_director_http2_connections_total",
        none,
        load(&s.h2_connections),
    );
    w.describe(
        "sticky_director_misdirected_total",
        "421 Misdirected Request answers naming the session's owner: re-sent to it (resent), relayed to a peer director as the owner is unreachable from here (relayed), or answered 503 (unavailable).",
        true,
    );
    for (outcome, v) in [
        ("resent", &s.misdirected_resent),
        ("relayed", &s.misdirected_relayed),
        ("unavailable", &s.misdirected_unavailable),
    ] {
        w.counter(
            "sticky_director_misdirected_total",
            &[("outcome", outcome.to_owned())],
            load(v),
        );
    }
    w.describe(
        "sticky_director_relayed_total",
        "Requests relayed to a peer director because the session's owner could not be reached from here: sent (relayed) or answered 503 when no peer could be reached either (failed).",
        true,
    );
    for (outcome, v) in [("relayed", &s.relayed), ("failed", &s.relay_failed)] {
        w.counter(
            "sticky_director_relayed_total",
            &[("outcome", outcome.to_owned())],
            load(v),
        );
    }
    w.describe(
        "sticky_director_upstream_errors_total",
        "Failed attempts towards web servers, by kind.",
        true,
    );
    for (kind, v) in [
        ("refused", &s.upstream_refused),
        ("connect", &s.upstream_connect_failed),
        ("send", &s.upstream_send_failed),
        ("timeout", &s.upstream_timeouts),
        ("marked_down", &s.upstream_ended_on_down),
    ] {
        w.counter(
            "sticky_director_upstream_errors_total",
            &[("kind", kind.to_owned())],
            load(v),
        );
    }
    w.describe(
        "sticky_director_connections",
        "Client connections open.",
        false,
    );
    w.gauge(
        "sticky_director_connections",
        none,
        load(&s.connections) as f64,
    );
    w.describe(
        "sticky_director_connections_total",
        "Client connections accepted.",
        true,
    );
    w.counter(
        "sticky_director_connections_total",
        none,
        load(&s.connections_total),
    );
    w.describe(
        "sticky_director_connections_rejected_total",
        "Client connections refused at max_connections.",
        true,
    );
    w.counter(
        "sticky_director_connections_rejected_total",
        none,
        load(&s.rejected_connections),
    );
    w.describe(
        "sticky_director_tunnels",
        "Upgraded (WebSocket) tunnels open.",
        false,
    );
    w.gauge("sticky_director_tunnels", none, load(&s.tunnels) as f64);

    w.describe(
        "sticky_director_server_up",
        "1 if the web server is routable (up and fenced, not evacuating).",
        false,
    );
    w.describe(
        "sticky_director_server_state",
        "1 for the web server's current state.",
        false,
    );
    w.describe(
        "sticky_director_server_unreachable",
        "1 while the director passes the web server over for moved and new clients (a failed connect or health check since its last good check).",
        false,
    );
    w.describe(
        "sticky_director_server_sessions",
        "Sessions in the web server's cache, as last reported.",
        false,
    );
    w.describe(
        "sticky_director_server_active",
        "Requests in flight to the web server.",
        false,
    );
    w.describe(
        "sticky_director_server_requests_total",
        "Requests sent to the web server.",
        true,
    );
    w.describe(
        "sticky_director_server_failovers_total",
        "Requests of the web server's clients routed elsewhere.",
        true,
    );
    w.describe(
        "sticky_director_server_errors_total",
        "Failed attempts towards the web server.",
        true,
    );
    for b in shared.backends() {
        let st = b.status();
        let server = [("server", st.name.clone())];
        let routable = matches!(st.state, ServerState::Up | ServerState::Draining);
        w.gauge(
            "sticky_director_server_up",
            &server,
            f64::from(u8::from(routable)),
        );
        for state in ["up", "down", "fencing", "draining", "evacuating"] {
            let current = serde_json::to_value(st.state)
                .ok()
                .is_some_and(|v| v.as_str() == Some(state));
            w.gauge(
                "sticky_director_server_state",
                &[("server", st.name.clone()), ("state", state.to_owned())],
                f64::from(u8::from(current)),
            );
        }
        w.gauge(
            "sticky_director_server_unreachable",
            &server,
            f64::from(u8::from(st.unreachable)),
        );
        w.gauge(
            "sticky_director_server_sessions",
            &server,
            st.sessions as f64,
        );
        w.gauge("sticky_director_server_active", &server, st.active as f64);
        w.counter(
            "sticky_director_server_requests_total",
            &server,
            st.requests,
        );
        w.counter(
            "sticky_director_server_failovers_total",
            &server,
            st.failovers,
        );
        w.counter("sticky_director_server_errors_total", &server, st.errors);
    }
    let mut text = w.recorder.handle().render();
    s.response_time.render(
        "sticky_director_response_seconds",
        "Time from a client request's head to the response head the director sends (the web server's time included, body streaming not).",
        &mut text,
    );
    text
}
