#[mw::service]
pub trait Svc {
    async fn get(&self) -> u64 { 42 }
}

fn main() {}
