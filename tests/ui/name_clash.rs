#[mw::service]
pub trait Svc {
    async fn get(&self) -> u64;
    async fn start_get(&self) -> u64;
}

fn main() {}
