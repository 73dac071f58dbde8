#[mw::service]
pub trait Svc {
    async fn make(n: u64) -> u64;
}

fn main() {}
