//! A gRPC service (tonic) that answers through the Switchboard stack, with the tier taken
//! from the call's gRPC metadata at the tonic edge.
//!
//! No `.proto` and no `protoc`: the two messages are `prost` derives and the service is
//! written the way tonic's generated code writes it (a `NamedService` that routes the
//! method path to a `UnaryService` through `tonic::server::Grpc`). `TierLayer` runs as a
//! tonic server layer over `http::Request`s, so the metadata (`authorization`,
//! `x-switchboard-tier`) decides the tier before the method is called; the method puts it
//! on the `ChatRequest` it sends down the stack. The example starts the server on a
//! loopback port and calls it twice with tonic's client.
//!
//! ```sh
//! cargo run -p switchboard-examples --example tonic_app
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use switchboard::core::{Scene, TenantId};
use switchboard::prelude::*;
use switchboard::tier::{KeyPolicy, TierLayer};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Status, body::Body};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceExt};

/// `switchboard.example.Assistant/Ask` request.
#[derive(Clone, PartialEq, prost::Message)]
struct AskRequest {
    #[prost(string, tag = "1")]
    question: String,
    #[prost(string, tag = "2")]
    model: String,
}

/// `switchboard.example.Assistant/Ask` reply.
#[derive(Clone, PartialEq, prost::Message)]
struct AskReply {
    #[prost(string, tag = "1")]
    answer: String,
    #[prost(string, tag = "2")]
    provider: String,
    #[prost(string, tag = "3")]
    tier: String,
}

const ASK: &str = "/switchboard.example.Assistant/Ask";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The gRPC service: `switchboard.example.Assistant`.
#[derive(Clone)]
struct Assistant {
    stack: BoxProvider,
}

impl NamedService for Assistant {
    const NAME: &'static str = "switchboard.example.Assistant";
}

/// The `Ask` method.
struct AskMethod(BoxProvider);

impl UnaryService<AskRequest> for AskMethod {
    type Response = AskReply;
    type Future = BoxFuture<Result<tonic::Response<AskReply>, Status>>;

    fn call(&mut self, request: tonic::Request<AskRequest>) -> Self::Future {
        let stack = self.0.clone();
        Box::pin(async move {
            // Set by TierLayer at the edge, from the metadata.
            let tier = request.extensions().get::<Tier>().copied();
            let scene = request.extensions().get::<Scene>().cloned();
            let tenant = request.extensions().get::<TenantId>().cloned();
            let ask = request.into_inner();
            let mut chat =
                ChatRequest::new(ChatBody::new(ask.model, vec![Message::user(ask.question)]));
            let ext = chat.extensions_mut();
            if let Some(tier) = tier {
                ext.insert(tier);
            }
            if let Some(scene) = scene {
                ext.insert(scene);
            }
            if let Some(tenant) = tenant {
                ext.insert(tenant);
            }
            let answer = async { stack.oneshot(chat).await?.collect().await }
                .await
                .map_err(|e: Error| Status::unavailable(e.reason()))?;
            Ok(tonic::Response::new(AskReply {
                answer: answer.text,
                provider: answer.provider.to_string(),
                tier: tier.map(|t| t.to_string()).unwrap_or_default(),
            }))
        })
    }
}

impl<B> Service<http::Request<B>> for Assistant
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != ASK {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let method = AskMethod(self.stack.clone());
        Box::pin(async move {
            let codec: ProstCodec<AskReply, AskRequest> = ProstCodec::default();
            Ok(Grpc::new(codec).unary(method, request).await)
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_toml(switchboard::DEMO_CONFIG)?;
    let switchboard = Switchboard::build(&config)?;

    // Admission at the tonic edge: a support key is L0; anyone may ask for a lower tier.
    let admission = TierLayer::builder()
        .headers()
        .api_key(
            "sk-support",
            KeyPolicy::new(TenantId::new("support")?).tier(Tier::L0),
        )
        .default_tier(Tier::L1)
        .build();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tonic::transport::Server::builder()
        .layer(admission)
        .add_service(Assistant {
            stack: switchboard.service(),
        })
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    println!("gRPC server on {addr}");

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    for (key, value) in [
        ("authorization", "Bearer sk-support"),
        ("x-switchboard-tier", "L2"),
    ] {
        let mut request = tonic::Request::new(AskRequest {
            question: "Say this is a test".into(),
            model: "quality".into(),
        });
        request.metadata_mut().insert(key, value.parse()?);
        client.ready().await?;
        let codec: ProstCodec<AskRequest, AskReply> = ProstCodec::default();
        let reply = client
            .unary(request, http::uri::PathAndQuery::from_static(ASK), codec)
            .await?
            .into_inner();
        println!(
            "{key}: {value} → tier {}, answered by {}: {}",
            reply.tier, reply.provider, reply.answer
        );
    }
    Ok(())
}
