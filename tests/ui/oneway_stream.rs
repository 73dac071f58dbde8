use mw::rpc::Streaming;

#[mw::service]
pub trait Svc {
    #[oneway(receipt)]
    async fn ticks(&self) -> Streaming<u64>;
}

fn main() {}
