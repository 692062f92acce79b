//! An in-process **emulator** of EC2's instance metadata service (IMDSv2), because tests run on
//! no EC2 instance, and moto's metadata endpoints answer fixed values without checking tokens or
//! listing directories, so they cannot show the token flow or a walk. It is not IMDS: it
//! implements the documented surface the imds backend uses, following AWS's documentation:
//!
//! * `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1 to 21600) returns a
//!   session token and echoes the TTL header; without the header, or with a bad TTL, 400.
//! * `GET /latest/<path>` needs `X-aws-ec2-metadata-token` with a live token, else 401 (IMDSv1
//!   is off, as on instances that require IMDSv2).
//! * A leaf answers its value; a directory answers its listing, one child per line, with a
//!   trailing `/` on sub-directories; `/latest/` lists `dynamic`, `meta-data` and `user-data`
//!   without slashes, as the real service does. Anything else is 404.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

#[derive(Debug, Default)]
struct Shared {
    /// Leaf path below `/latest/` (`meta-data/instance-id`) → value.
    leaves: Mutex<BTreeMap<String, String>>,
    tokens: Mutex<BTreeSet<String>>,
    /// Every request as `METHOD path`, oldest first.
    requests: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct ServerThread {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// The IMDS emulator: an HTTP server on 127.0.0.1 on its own thread and runtime.
#[derive(Debug)]
pub struct ImdsEmulator {
    shared: Arc<Shared>,
    port: u16,
    server: Option<ServerThread>,
}

impl ImdsEmulator {
    /// Starts the emulator on a free loopback port with an instance's usual metadata.
    pub fn start() -> ImdsEmulator {
        let emulator = ImdsEmulator::empty();
        for (path, value) in [
            ("/meta-data/ami-id", "ami-0abcdef1234567890"),
            ("/meta-data/instance-id", "i-0123456789abcdef0"),
            ("/meta-data/instance-type", "t3.micro"),
            ("/meta-data/local-ipv4", "10.0.0.12"),
            ("/meta-data/placement/availability-zone", "eu-west-1a"),
            ("/meta-data/placement/region", "eu-west-1"),
            ("/meta-data/tags/instance/Name", "web-1"),
            ("/meta-data/tags/instance/Environment", "staging"),
            (
                "/dynamic/instance-identity/document",
                "{\n  \"instanceId\" : \"i-0123456789abcdef0\",\n  \"region\" : \"eu-west-1\"\n}",
            ),
            ("/user-data", "#!/bin/sh\necho hello\n"),
        ] {
            emulator.put(path, value);
        }
        emulator
    }

    /// Starts the emulator with no metadata at all.
    pub fn empty() -> ImdsEmulator {
        let shared = Arc::new(Shared::default());
        let (port, server) = serve(shared.clone()).expect("binding the IMDS emulator");
        ImdsEmulator {
            shared,
            port,
            server: Some(server),
        }
    }

    /// `http://127.0.0.1:<port>`, the endpoint the imds backend takes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets the leaf `path` (below `/latest`, e.g. `/meta-data/instance-id`).
    pub fn put(&self, path: &str, value: &str) {
        lock(&self.shared.leaves).insert(path.trim_matches('/').to_string(), value.to_string());
    }

    /// Removes the leaf `path`.
    pub fn delete(&self, path: &str) {
        lock(&self.shared.leaves).remove(path.trim_matches('/'));
    }

    /// Every request so far as `METHOD path`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets every session token, as when they expire: the next GET with one gets 401.
    pub fn expire_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// Stops serving.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            let _ = server.thread.join();
        }
    }
}

impl Drop for ImdsEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(shared: Arc<Shared>) -> std::io::Result<(u16, ServerThread)> {
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = bound_tx.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            let _ = bound_tx.send(listener.local_addr().map(|a| a.port()));
            let app = Router::new().fallback(any(handle)).with_state(shared);
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            let _ = shutdown_rx.await;
        });
    });
    let port = bound_rx
        .recv()
        .map_err(|_| std::io::Error::other("emulator thread died"))??;
    Ok((port, ServerThread { shutdown, thread }))
}

async fn handle(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_string();
    lock(&shared.requests).push(format!("{method} {path}"));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let ttl =
            header("x-aws-ec2-metadata-token-ttl-seconds").and_then(|t| t.parse::<u32>().ok());
        if !ttl.is_some_and(|t| (1..=21600).contains(&t)) {
            return StatusCode::BAD_REQUEST.into_response();
        }
        let token = format!("token-{}", rand::random::<u64>());
        lock(&shared.tokens).insert(token.clone());
        let ttl = ttl.unwrap_or_default().to_string();
        return ([("x-aws-ec2-metadata-token-ttl-seconds", ttl)], token).into_response();
    }
    if method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let authorised =
        header("x-aws-ec2-metadata-token").is_some_and(|t| lock(&shared.tokens).contains(t));
    if !authorised {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(rest) = path.strip_prefix("/latest") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let rest = rest.trim_matches('/');
    let leaves = lock(&shared.leaves);
    if let Some(value) = leaves.get(rest) {
        return value.clone().into_response();
    }
    let dir = if rest.is_empty() {
        String::new()
    } else {
        format!("{rest}/")
    };
    let mut children = BTreeSet::new();
    for key in leaves.keys() {
        if let Some(below) = key.strip_prefix(&dir) {
            match below.split_once('/') {
                // The root listing has no slashes, as on a real instance.
                Some((child, _)) if !dir.is_empty() => children.insert(format!("{child}/")),
                Some((child, _)) => children.insert(child.to_string()),
                None => children.insert(below.to_string()),
            };
        }
    }
    if children.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    children
        .into_iter()
        .collect::<Vec<_>>()
        .join("\n")
        .into_response()
}
