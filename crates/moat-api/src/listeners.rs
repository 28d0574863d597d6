//! Listeners are data: an address and an origin. The public listener tags its requests
//! `public`; each private endpoint gets a listener of its own, on its allocated address, whose
//! requests carry the endpoint's key as their origin, so that network admission knows exactly
//! where a request came in. The endpoint listeners follow the network view: one opens when an
//! endpoint is created and closes when it is deleted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use moat_core::Moat;
use moat_core::network::{BindingMode, EndpointInfo};
use tower::Layer;

use crate::error::ArmError;

/// The origin of requests from the public listener.
pub const PUBLIC_ORIGIN: &str = "public";

/// Which listener a request came in on: `public`, or the key of a private endpoint.
#[derive(Clone, Debug)]
pub struct ListenerOrigin(pub Arc<str>);

/// Serves the API on `listener` for requests of `origin` until `shutdown` resolves, then
/// drains in-flight requests.
pub async fn serve_origin(
    listener: tokio::net::TcpListener,
    moat: Arc<Moat>,
    origin: Arc<str>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tag = move |mut req: Request| {
        req.extensions_mut().insert(ListenerOrigin(origin.clone()));
        crate::canonicalize(req)
    };
    let app = tower::util::MapRequestLayer::new(tag).layer(crate::router(moat));
    axum::serve(listener, axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Whether a private endpoint's listener serves `path` at all: identity (like Entra ID, always
/// reachable), discovery, the registry's asset operations and the blob plane. Which resource
/// and plane it may reach is network admission's decision; management requests go to the
/// public listener, as ARM stays reachable from everywhere.
pub fn endpoint_serves(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if crate::blob::is_blob_path(path)
        || lower == "/healthz"
        || lower.starts_with("/registrymanagement/")
        || lower.ends_with("/oauth2/v2.0/token")
        || lower.ends_with("/.well-known/openid-configuration")
        || lower.ends_with("/discovery/v2.0/keys")
    {
        return true;
    }
    // …/providers/Microsoft.MachineLearningServices/registries/{r}/{assets}/…
    let segs: Vec<&str> = lower.split('/').collect();
    segs.windows(4).any(|w| {
        w[0] == "microsoft.machinelearningservices"
            && w[1] == "registries"
            && matches!(w[3], "models" | "data" | "codes" | "components" | "environments" | "datareferences")
    })
}

/// Refuses, on a private endpoint's listener, what it does not serve.
pub async fn endpoint_gate(req: Request, next: Next) -> Response {
    let origin = req.extensions().get::<ListenerOrigin>().map(|o| o.0.clone());
    match origin {
        Some(o) if &*o != PUBLIC_ORIGIN && !endpoint_serves(req.uri().path()) => ArmError::http(
            StatusCode::FORBIDDEN,
            "NotServedByPrivateEndpoint",
            None,
            format!(
                "This listener is private endpoint '{o}', which serves only its target's data plane (asset operations, discovery or blobs). \
                 Send management requests ('{}') to moat's public endpoint.",
                req.uri().path()
            ),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

struct Running {
    ip: IpAddr,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Opens and closes private endpoint listeners as the network view changes, until `stop`.
/// Each listener binds its endpoint's address on `port` (the public listener's), or on a port
/// the system picks when that one is taken; `serviceUrl` reports where.
pub async fn run_endpoint_listeners(moat: Arc<Moat>, port: u16, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut changes = moat.network_changes();
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let view = changes.borrow_and_update().clone();
        let wanted: HashMap<&str, &EndpointInfo> = view.endpoints().iter().map(|e| (e.key.as_str(), e)).collect();
        running.retain(|key, r| {
            let keep = wanted.get(key.as_str()).is_some_and(|e| e.ip == r.ip);
            if !keep {
                moat.set_listener_url(key, None);
                tracing::info!(endpoint = %key, "private endpoint listener closed");
            }
            keep
        });
        for (key, e) in wanted {
            if running.contains_key(key) {
                continue;
            }
            match open(&moat, e, port).await {
                Ok(r) => {
                    running.insert(key.to_string(), r);
                }
                Err(err) => tracing::error!(endpoint = %key, address = %e.ip, error = %err, "cannot open the private endpoint listener"),
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
    }
    for (key, r) in running {
        let _ = r.stop.send(());
        moat.set_listener_url(&key, None);
    }
}

async fn open(moat: &Arc<Moat>, e: &EndpointInfo, port: u16) -> std::io::Result<Running> {
    if e.mode == BindingMode::Namespace {
        return Err(std::io::Error::other("namespace-mode networks are not served yet"));
    }
    let listener = match tokio::net::TcpListener::bind((e.ip, port)).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind((e.ip, 0)).await?,
    };
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let origin: Arc<str> = Arc::from(e.key.as_str());
    let m = Arc::clone(moat);
    let key = e.key.clone();
    tokio::spawn(async move {
        if let Err(err) = serve_origin(listener, m, origin, async move {
            let _ = rx.await;
        })
        .await
        {
            tracing::error!(endpoint = %key, error = %err, "private endpoint listener failed");
        }
    });
    moat.set_listener_url(&e.key, Some(format!("http://{addr}")));
    tracing::info!(endpoint = %e.key, %addr, "private endpoint listener open");
    Ok(Running { ip: e.ip, stop: tx })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_listeners_serve_data_planes_only() {
        let reg = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/registries/r";
        for served in [
            format!("{reg}/models/m/versions/1"),
            format!("{reg}/models"),
            format!("{reg}/datareferences/m/versions/1"),
            "/registrymanagement/v1.0/registries/r/discovery".to_string(),
            "/0123456789a/container/blob".to_string(),
            "/oauth2/v2.0/token".to_string(),
            "/healthz".to_string(),
        ] {
            assert!(endpoint_serves(&served), "{served}");
        }
        for refused in [
            reg.to_string(),
            format!("{reg}/privateEndpointConnections"),
            "/subscriptions/s/resourceGroups/g".to_string(),
            "/v1.0/users".to_string(),
            "/subscriptions/s/providers/Microsoft.Insights/eventtypes/management/values".to_string(),
        ] {
            assert!(!endpoint_serves(&refused), "{refused}");
        }
    }
}
