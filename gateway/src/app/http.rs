//! The public listener's router: `/healthz`, and Socket.IO under `/socket.io/` behind CORS for
//! the allowed browser origins, once it exists.

use std::{
    convert::Infallible,
    sync::{Arc, OnceLock},
};

use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tower::{
    Layer as _, Service, ServiceBuilder, ServiceExt, service_fn, util::BoxCloneSyncService,
};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::{
    health::Health, internal, origins::Origins, realtime::io::Layer,
    request_head::detach_from_read_buffer,
};

/// The Socket.IO service: built once, cloned per request (clones share the Engine.IO sessions;
/// applying the layer again would start an empty session table).
pub type SocketService = BoxCloneSyncService<Request, Response, Infallible>;

/// `/healthz`, and Socket.IO once it exists (503 until then) for the allowed origins (403).
pub fn public_router(
    health: Arc<Health>,
    socket_app: Arc<OnceLock<SocketService>>,
    origins: Arc<Origins>,
) -> Router {
    Router::new()
        .route("/healthz", get(internal::healthz).with_state(health))
        .fallback(move |request: Request| {
            let socket_app = socket_app.clone();
            let allowed = origins.allows(request.headers().get(header::ORIGIN));
            async move {
                if !allowed {
                    return internal::ApiError::OriginNotAllowed.into_response();
                }
                match socket_app.get() {
                    Some(app) => match app.clone().oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    None => internal::ApiError::NotAccepting.into_response(),
                }
            }
        })
}

/// Socket.IO under `/socket.io/`, with CORS for browser clients: the allowed origins, or with
/// `CORS_ORIGINS=*` the guide's `origin: '*', credentials: true` (the origin is mirrored, as `*`
/// cannot carry credentials).
pub fn socket_service(layer: Layer, origins: &Origins) -> SocketService {
    let allow_origin = match origins {
        Origins::Any => AllowOrigin::mirror_request(),
        Origins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    let not_found = service_fn(|_: Request| async {
        Ok::<_, Infallible>(StatusCode::NOT_FOUND.into_response())
    });
    match layer {
        Layer::Single(layer) => boxed(layer.layer(not_found), allow_origin),
        Layer::Cluster(layer) => boxed(layer.layer(not_found), allow_origin),
    }
}

fn boxed<S, B>(service: S, allow_origin: AllowOrigin) -> SocketService
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request());
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(cors)
            // After CORS, which reads the request's other headers.
            .map_request(detach_from_read_buffer)
            .map_response(|response: axum::http::Response<_>| response.map(axum::body::Body::new))
            .service(service),
    )
}
