// Using the macro and the generated types through the facade `mw` only.
use mw::rpc::Streaming;

#[mw::service(name = "pass", version = 4)]
pub trait Everything {
    async fn unary(&self, n: u64) -> u64;
    async fn fallible(&self, n: u64) -> Result<u64, String>;
    #[oneway]
    async fn fire(&self);
    #[oneway(receipt)]
    async fn receipt(&self, s: String);
    #[oneway(delivery)]
    async fn delivery(&self, s: String);
    async fn stream(&self, n: u32) -> Streaming<u32>;
    #[method(id = 42)]
    async fn explicit(&self) -> String;
}

struct Impl;

impl Everything for Impl {
    async fn unary(&self, n: u64) -> u64 { n }
    async fn fallible(&self, n: u64) -> Result<u64, String> { Ok(n) }
    async fn fire(&self) {}
    async fn receipt(&self, _s: String) {}
    async fn delivery(&self, _s: String) {}
    async fn stream(&self, n: u32) -> Streaming<u32> { Box::pin(futures::stream::iter(0..n)) }
    async fn explicit(&self) -> String { String::new() }
}

fn main() {
    let server: Box<dyn mw::rpc::Service> = Box::new(EverythingServer::new(Impl));
    assert_eq!(server.id(), EverythingClient::SERVICE);
}
