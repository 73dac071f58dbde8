#[mw::service]
pub trait Svc {
    async fn consume(self) -> u64;
}

fn main() {}
