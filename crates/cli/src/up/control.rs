//! The supervisor's control API: list the cluster's processes and kill,
//! pause, resume or restart one of them. It listens on loopback only (the
//! admin port + 1; with `--netns`, on this namespace's address on the
//! run's bridge, which only this machine and its namespaces reach) and
//! requires the cluster's admin token as
//! `Authorization: Bearer`; the director's admin listener proxies it under
//! the same paths for the dashboard (`[director] supervisor`).
//!
//! | route | action |
//! |---|---|
//! | `GET /api/processes` | every process: name, role, address, PID, state |
//! | `POST /api/processes/{name}/kill` | SIGKILL; answers once it is gone |
//! | `POST /api/processes/{name}/pause` | SIGSTOP |
//! | `POST /api/processes/{name}/resume` | SIGCONT |
//! | `POST /api/processes/{name}/restart` | stops it if running (SIGTERM, then SIGKILL), starts it again with the same arguments; answers with the new PID, state `starting` until healthy |
//!
//! With `--netns` (the cluster in network namespaces, `netns.rs`), also:
//!
//! | route | action |
//! |---|---|
//! | `GET /api/net` | the network: each host's address, namespace and packets dropped on their way to it |
//! | `POST /api/net` | a network fault or its healing (`NetFault` as JSON: `{"op":"cut","a":"ws1","b":"s2"}`) |
//!
//! Without it, `/api/net` answers 404. The HTTP handlers only pass
//! commands to the supervisor's loop, which owns the child processes; the
//! network faults are applied by the handler (the network has its own
//! lock).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header::AUTHORIZATION, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sticky_proto::control::ProcessAction;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::netns::{NetFault, SharedNet};
use super::state::ProcessInfo;

/// Why an action was not carried out.
#[derive(Debug)]
pub(crate) enum ControlError {
    /// No process has that name.
    Unknown(String),
    /// The process is not in a state the action applies to.
    Conflict(String),
    /// The action failed (e.g. the process could not be started again).
    Failed(String),
}

/// A request to the supervisor's loop.
pub(crate) enum Command {
    /// Every process.
    List(oneshot::Sender<Vec<ProcessInfo>>),
    /// Act on one process.
    Act {
        name: String,
        action: ProcessAction,
        reply: oneshot::Sender<Result<ProcessInfo, ControlError>>,
    },
}

#[derive(Clone)]
struct Api {
    token: Arc<str>,
    commands: mpsc::Sender<Command>,
    net: SharedNet,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn gone() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the supervisor is stopping the cluster",
    )
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    if sticky_proto::control::authorized(header, &api.token) {
        next.run(req).await
    } else {
        let mut resp = error(StatusCode::UNAUTHORIZED, "admin token required");
        resp.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        resp
    }
}

async fn list(State(api): State<Api>) -> Response {
    let (tx, rx) = oneshot::channel();
    if api.commands.send(Command::List(tx)).await.is_err() {
        return gone();
    }
    match rx.await {
        Ok(processes) => Json(json!({
            "supervisor_pid": std::process::id(),
            "processes": processes,
        }))
        .into_response(),
        Err(_) => gone(),
    }
}

async fn act(State(api): State<Api>, Path((name, action)): Path<(String, String)>) -> Response {
    let Ok(action) = action.parse::<ProcessAction>() else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown action: use kill, pause, resume or restart",
        );
    };
    let (tx, rx) = oneshot::channel();
    let cmd = Command::Act {
        name,
        action,
        reply: tx,
    };
    if api.commands.send(cmd).await.is_err() {
        return gone();
    }
    match rx.await {
        Ok(Ok(info)) => Json(info).into_response(),
        Ok(Err(ControlError::Unknown(name))) => {
            error(StatusCode::NOT_FOUND, &format!("no process named {name:?}"))
        }
        Ok(Err(ControlError::Conflict(m))) => error(StatusCode::CONFLICT, &m),
        Ok(Err(ControlError::Failed(m))) => error(StatusCode::INTERNAL_SERVER_ERROR, &m),
        Err(_) => gone(),
    }
}

fn no_net() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this cluster has no network of its own (start it with `sticky up --netns`)",
    )
}

async fn net_info(State(api): State<Api>) -> Response {
    let Some(net) = api.net.clone() else {
        return no_net();
    };
    match tokio::task::spawn_blocking(move || super::netns::describe(&net)).await {
        Ok(Ok(info)) => Json(info).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn net_fault(State(api): State<Api>, Json(fault): Json<NetFault>) -> Response {
    let Some(net) = api.net.clone() else {
        return no_net();
    };
    let f = fault.clone();
    match tokio::task::spawn_blocking(move || f.apply(&net)).await {
        Ok(Ok(())) => {
            event!(
                "network: {}",
                serde_json::to_string(&fault).unwrap_or_default()
            );
            Json(json!({ "ok": true })).into_response()
        }
        Ok(Err(
            e @ (sticky_netfault::NetError::UnknownHost(_)
            | sticky_netfault::NetError::SameEndpoint(_)
            | sticky_netfault::NetError::InvalidSlow(_)
            | sticky_netfault::NetError::InvalidLoss(_)),
        )) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The control API's routes.
fn router(token: String, commands: mpsc::Sender<Command>, net: SharedNet) -> Router {
    let api = Api {
        token: token.into(),
        commands,
        net,
    };
    Router::new()
        .route("/api/processes", get(list))
        .route("/api/processes/{name}/{action}", post(act))
        .route("/api/net", get(net_info).post(net_fault))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::from_fn_with_state(api.clone(), auth))
        .with_state(api)
}

/// Serves the control API on `listener` until the task is aborted.
pub(crate) async fn serve(
    listener: TcpListener,
    token: String,
    commands: mpsc::Sender<Command>,
    net: SharedNet,
) {
    if let Err(e) = axum::serve(listener, router(token, commands, net)).await {
        tracing::error!(error = %e, "the supervisor's control API stopped");
    }
}
